"""``send_outputs``: a stage's records go out together, and the last only once the others are acked
(a weights update's ``routing.weights`` record never names a version whose markers failed)."""

from __future__ import annotations

import asyncio

import pytest

from fedrift.core.records import Output
from streams.app import send_outputs


class FakeTopic:
    def __init__(self, log: list, name: str, acks: dict) -> None:
        self.log, self.name, self.acks = log, name, acks

    async def send(self, key, value, partition):
        self.log.append(("sent", self.name, partition))
        ack = asyncio.get_running_loop().create_future()
        self.acks[(self.name, partition)] = ack
        return ack


class FakeTopics:
    def __init__(self) -> None:
        self.log: list = []
        self.acks: dict = {}
        self.catalog = type("Catalog", (), {"name": staticmethod(lambda base: base)})()

    def get(self, name: str) -> FakeTopic:
        return FakeTopic(self.log, name, self.acks)


def _weights(partitions: int) -> list[Output]:
    record = {"version": 1, "time": 0, "weights": {"a": 1.0}}
    markers = [Output("inference.requests", "RoutingWeights", record, "weights", p) for p in range(partitions)]
    return [*markers, Output("routing.weights", "RoutingWeights", record, "weights")]


def test_the_last_record_waits_for_every_ack_of_the_others():
    async def scenario() -> list:
        topics = FakeTopics()
        task = asyncio.create_task(send_outputs(topics, _weights(3)))
        await asyncio.sleep(0)
        assert [e[1] for e in topics.log] == ["inference.requests"] * 3  # all out at once, none acked
        for p in range(3):
            topics.acks[("inference.requests", p)].set_result(None)
        while ("routing.weights", None) not in topics.acks:
            await asyncio.sleep(0)
        topics.acks[("routing.weights", None)].set_result(None)
        await task
        return topics.log

    assert [e[1] for e in asyncio.run(scenario())][-1] == "routing.weights"


def test_a_failed_marker_stops_the_routing_weights_record():
    async def scenario() -> FakeTopics:
        topics = FakeTopics()
        task = asyncio.create_task(send_outputs(topics, _weights(2)))
        await asyncio.sleep(0)
        topics.acks[("inference.requests", 0)].set_exception(RuntimeError("broker said no"))
        topics.acks[("inference.requests", 1)].set_result(None)
        with pytest.raises(RuntimeError, match="broker said no"):
            await task
        return topics

    assert ("routing.weights", None) not in asyncio.run(scenario()).acks

"""The producer's stamps: a request's Kafka timestamp is its event time, distinct when paced."""

from __future__ import annotations

import itertools

from fedrift.produce import DistinctMillis, clock_for, produce, request_events, wall_ms
from fedrift.topics import TopicCatalog


class CapturingProducer:
    """Stands in for ``RecordProducer``: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict, str | None, int | None]] = []

    def send(self, topic, record, value, key=None, headers=None, timestamp_ms=None) -> None:
        self.sent.append((topic, record, value, key, timestamp_ms))

    def flush(self) -> None:
        pass


def test_a_request_is_sent_with_its_event_time_as_kafka_timestamp():
    rows = [([float(i)], i % 2) for i in range(6)]
    producer = CapturingProducer()
    n = produce(producer, TopicCatalog(prefix="t."), request_events(rows, "r", label_delay=2))
    assert n == 6
    for topic, _, value, key, stamp in producer.sent:
        assert key == value["id"]
        assert stamp == (value["event_time"] if topic.endswith("inference.requests") else value["time"])


def test_a_burst_stamped_by_distinct_millis_has_one_order():
    # 200 requests at once: a wall-clock stamp gives most of them the same millisecond
    clock = DistinctMillis()
    events = list(request_events(([[0.0], 0] for _ in range(200)), "r", clock=clock))
    stamps = [v["event_time"] for _, _, v in events]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[-1] <= wall_ms()  # never ahead of the wall clock


def test_only_a_paced_producer_waits_for_distinct_stamps():
    assert isinstance(clock_for(125.0), DistinctMillis)
    assert isinstance(clock_for(1000.0), DistinctMillis)
    assert clock_for(0.0) is wall_ms  # as fast as it can: ties accepted, never capped at 1000/s
    assert clock_for(5000.0) is wall_ms

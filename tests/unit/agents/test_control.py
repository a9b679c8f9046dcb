"""Which host dead-letters an unusable control record: exactly one, for every kind."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.control import HostControl
from fedrift.topics import DEPLOYMENTS, HPO_KEYS, HPO_TRIGGERS, TopicCatalog
from schemas import codec
from tests.samples import SAMPLES

POOL, REPLICAS = ("hat", "linear"), 3
CATALOG = TopicCatalog("p.", POOL)


@dataclass
class Msg:
    _topic: str
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class Host(HostControl):
    def __init__(self, model: str, replica: int) -> None:
        self.catalog, self.codec, self.model, self.replica = CATALOG, codec(), model, replica
        self.dlq_owner = model == POOL[0]


def _owners(msg: Msg) -> list[str]:
    return [f"{m}-{r}" for m in POOL for r in range(REPLICAS) if Host(m, r)._owns_control_dlq(msg)]


@pytest.mark.parametrize(("topic", "record", "value", "owner"), [
    (HPO_KEYS, "AgentKey", {**SAMPLES["AgentKey"], "model": "linear", "host": "linear-2"}, "linear-0"),
    (HPO_KEYS, "AgentKey", {**SAMPLES["AgentKey"], "model": "linear", "host": "linear-0"}, "linear-1"),
    (HPO_KEYS, "RoundKeys", {**SAMPLES["RoundKeys"], "model": "linear", "agent": "linear-0"}, "linear-1"),
    (HPO_KEYS, "RoundKeys", {**SAMPLES["RoundKeys"], "model": "linear", "agent": "linear-1"}, "linear-0"),
    (DEPLOYMENTS, "Deployment", {**SAMPLES["Deployment"], "model": "linear"}, "linear-0"),
    (HPO_TRIGGERS, "HpoTrigger", SAMPLES["HpoTrigger"], "hat-0"),
])
def test_one_host_owns_each_refused_control_record(topic, record, value, owner):
    assert _owners(Msg(CATALOG.name(topic), codec().encode(record, value))) == [owner]


def test_undecodable_bytes_are_owned_by_the_first_model_replica_0():
    assert _owners(Msg(CATALOG.name(DEPLOYMENTS), b"garbage")) == ["hat-0"]

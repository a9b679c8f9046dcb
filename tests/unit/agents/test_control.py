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


class _Finished:
    """A round that has just finished: its metrics spent ε in the agent's ledger."""

    class agent:
        class ledger:
            max_loss = 0.0

    keys_arrived = True  # whether the peers' round keys are in: the round is handed over

    def collect(self):
        self.agent.ledger.max_loss = 2.5  # the agent comes back from its worker with what it spent
        return True

    def finished(self):
        outcome = type("Outcome", (), {"status": "ok", "trials": []})()
        return [({"round_id": "r1"}, outcome)] if self.keys_arrived else []

    def metrics(self, trigger, outcome):
        from fedrift.core.records import Output
        return [Output("hpo.metrics", "TrialMetric", {"round_id": trigger["round_id"]}, "linear")]

    def start_next(self, window, config):
        pass


def test_the_ledger_reaches_disk_before_the_metrics_it_paid_for_leave():
    """A SIGKILL right after the metrics are published must find the spend in the checkpoint."""
    assert _polled(keys_arrived=True) == [("checkpoint", 2.5), ("checkpoint", 2.5), ("publish", ["TrialMetric"])]


def test_a_round_waiting_for_its_peers_keys_has_its_spend_on_disk():
    """A batch that fails while the round waits reloads the checkpoint: it must hold the spend."""
    assert _polled(keys_arrived=False) == [("checkpoint", 2.5)]


def _polled(keys_arrived: bool) -> list:
    events = []

    class Recording(Host):
        def _checkpoint(self):  # what the checkpoint holds: the agent's ledger
            events.append(("checkpoint", self.rounds.agent.ledger.max_loss))

        def _control_transaction(self, outputs, letters=()):
            events.append(("publish", [o.record for o in outputs]))

    host = Recording("linear", 0)
    host.rounds = _Finished()
    host.rounds.keys_arrived = keys_arrived
    host.control = type("Consumer", (), {"consume": lambda self, **kw: []})()
    host.replica_state = type("Replica", (), {"epsilon_spent": 0.0, "status": lambda self: None,
                                              "window": type("W", (), {"events": []})(), "config": {}})()
    host._poll_control()
    return events

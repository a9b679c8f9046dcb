"""Secure aggregation survives a replica that dies mid-round, on the real broker: it sent its
round keys (its peers masked with it) and was SIGKILLed before its metrics. The aggregator names
it dropped, the survivors hand over their shares of its mask key and of each other's seeds, and
the round's aggregate is the survivors' true sum. The replica, restarted, resumes from its
checkpoint.

Before the hosts start, a host principal publishes a key of its own under linear-1's name (first
contact: pinned at first sight, it would be trusted in linear-1's place and linear-1 shut out as
a conflict). The hosts and the aggregator trust only the roster ``fedrift run`` wrote
(``fedrift.roster``), so the impostor's key is refused and linear-1 takes part."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fedrift import datasets
from fedrift.access import host_role
from fedrift.connection import connect
from fedrift.core.masking import SecureAggregation
from fedrift.core.secagg import Identity
from fedrift.kafka_io import RecordProducer, now_ms, read_to_end
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.topics import HPO_AGGREGATES, HPO_KEYS, HPO_METRICS, HPO_TRIGGERS, MODEL_STATUS
from schemas import codec
from tests.integration.conftest import admin, client, ensure_topics

pytestmark = pytest.mark.integration


def _records(settings, topic: str) -> list[tuple[str, dict]]:
    return [codec().decode(m.value()) for m in read_to_end(admin(settings), topic, timeout=5)]


def test_a_replica_dies_mid_round_and_the_survivors_unmask(settings, tmp_path):
    settings = dataclasses.replace(
        settings, models=("linear",), replicas=3, n_features=3, status_every=100, hpo_round_timeout_s=20.0,
        cold_start_hpo_at=0,  # the one round is the test's
        # two survivors of three may unmask here (the default minimum group is 3: one dropout of
        # three aborts the masked part of a round; tests/unit/privacy/test_unmask_attacks.py)
        # more BO steps: the round lasts long enough for linear-2 to be killed inside it
        fhpo=dataclasses.replace(settings.fhpo, min_survivors=2, n_local=6),
    )
    catalog = ensure_topics(settings)
    _publish_impostor_key(settings, catalog, "linear-1")
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready(120)
        _fill_windows(pipeline, settings, catalog)
        _trigger_and_kill_inside_the_round(pipeline, settings, catalog)
        aggregate = _await_aggregate(pipeline, settings, catalog)
        # the stopped host checkpointed at its clean stop; restarted, it resumes with its model
        pipeline.start_host("linear", 2)
        log = tmp_path / "logs" / "host-linear-2.log"
        deadline = time.monotonic() + 60
        while "restored its checkpoint" not in log.read_text() and time.monotonic() < deadline:
            pipeline.check()
            time.sleep(1)
        assert "restored its checkpoint" in log.read_text(), log.read_text()[-2000:]
    assert aggregate is not None, "no aggregate for the round"
    _check_the_survivors_unmasked(settings, catalog, aggregate)


def _publish_impostor_key(settings, catalog, victim: str) -> None:
    """A self-signed key in ``victim``'s name, written by a host principal under its own record key,
    so every reader of the compacted ``hpo.keys`` meets it before the victim's own."""
    impostor = SecureAggregation("linear", victim, Identity.generate(), set(), 3, 2)
    producer = RecordProducer(connect(settings, host_role("linear")))
    producer.send(catalog.name(HPO_KEYS), "AgentKey", impostor.key_record(now_ms()), key="impostor")
    producer.flush()


def _fill_windows(pipeline, settings, catalog) -> None:
    """A stable stream (the analyzer stays quiet) until every replica has its local window."""
    rows = list(datasets.synthetic("sea", 3000, seed=5))
    produce(RecordProducer(client(settings)), catalog, request_events(rows, run_id="fill"), rate=500)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pipeline.check()
        seen = {s["host"]: s["n_seen"] for _, s in _records(settings, catalog.name(MODEL_STATUS))}
        if len(seen) == 3 and min(seen.values()) >= 600:  # FHPO needs 500
            break
        time.sleep(2)
    assert len(seen) == 3 and min(seen.values()) >= 600, seen


def _trigger_and_kill_inside_the_round(pipeline, settings, catalog) -> None:
    """The operator triggers round fault-1; linear-2 is killed once its round keys are out."""
    trigger = {"round_id": "fault-1", "time": now_ms(), "reason": "test", "drift_score": 0.0, "models": [],
               "as_of": -1, "design": ""}
    operator = RecordProducer(admin(settings))  # a client may not trigger rounds
    operator.send(catalog.name(HPO_TRIGGERS), "HpoTrigger", trigger, key="linear")
    operator.flush()
    deadline = time.monotonic() + 60
    while not _round_keys_of(settings, catalog, "linear-2") and time.monotonic() < deadline:
        time.sleep(0.1)
    pipeline.stop_process("host-linear-2", grace=0)  # its round takes seconds: it dies inside it
    assert _round_keys_of(settings, catalog, "linear-2"), "linear-2 never sent its round keys"


def _await_aggregate(pipeline, settings, catalog) -> dict | None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        pipeline.check()
        time.sleep(3)
        found = [v for _, v in _records(settings, catalog.name(HPO_AGGREGATES)) if v["round_id"] == "fault-1"]
        if found:
            return found[-1]
    return None


def _check_the_survivors_unmasked(settings, catalog, aggregate: dict) -> None:
    """The aggregator named linear-2 dropped; the survivors handed over its key shares and each
    other's seed shares, never both of one host; the masked configurations came out unmasked."""
    triggers = _records(settings, catalog.name(HPO_TRIGGERS))
    [request] = [v for name, v in triggers if name == "UnmaskRequest" and v["round_id"] == "fault-1"]
    assert request["survivors"] == ["linear-0", "linear-1"] and request["dropped_agents"] == ["linear-2"]
    metrics = _records(settings, catalog.name(HPO_METRICS))
    trials = [v for name, v in metrics if name == "TrialMetric" and v["round_id"] == "fault-1"]
    assert {v["agent"] for v in trials} == {"linear-0", "linear-1"}  # linear-2 died before its metrics
    masked = [v for v in trials if v["masked_value"] is not None]
    assert masked and all(v["masked_with"] == sorted({"linear-0", "linear-1", "linear-2"} - {v["agent"]})
                          for v in masked)
    answers = {v["agent"]: v for name, v in metrics if name == "UnmaskShare" and v["round_id"] == "fault-1"}
    assert set(answers) == {"linear-0", "linear-1"}
    assert all(set(a["seed_shares"]) == {"linear-0", "linear-1"} and set(a["key_shares"]) == {"linear-2"}
               for a in answers.values())  # never a seed and a key share of one host
    assert aggregate["agents"] == ["linear-0", "linear-1"]
    recovered = [e for e in aggregate["leaderboard"] if e["agents"] == 2]
    assert recovered, aggregate["leaderboard"]  # the masked configurations were unmasked, not dropped
    # masks are uniform in 2^62 / 2^24: a failed cancellation could not land in a noised accuracy's range
    assert all(-0.5 < e["score"] < 1.5 for e in aggregate["leaderboard"])


def _round_keys_of(settings, catalog, host: str) -> bool:
    return any(name == "RoundKeys" and v["agent"] == host and v["round_id"] == "fault-1"
               for name, v in _records(settings, catalog.name(HPO_KEYS)))

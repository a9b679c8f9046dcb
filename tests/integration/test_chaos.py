"""Exactly-once per request id while fedrift processes and a Kafka broker are SIGKILLed.

On the 3-node secure cluster (topics with replication factor 3, min.insync.replicas 2) the whole
pipeline (a Faust worker per processor and the model hosts, supervised by ``Pipeline``) serves a
drifting, labelled stream (a third of the labels late, on ``inference.feedback``). Meanwhile a
host of each model (one of them while the drift's HPO round runs), the routing controller's Faust
worker and the broker that leads request partition 0 are killed with SIGKILL and restarted (the
processes by the supervisor). A host whose transaction call hangs on the dead coordinator ends
itself (``kafka_io.exit_if_hung``), and a Faust worker restarted while that broker is down can
fail to start (it asks the dead broker); both are restarted too, so those restarts, each found
in the process's log, are allowed beside the kills, and no other. Then, per request id: every acked request has
exactly one read_committed prediction, and each model learned each label exactly once (the hosts'
learned-id digests).
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from fedrift.access import ADMIN
from fedrift.config import Settings
from fedrift.connection import connect, for_cluster
from fedrift.exactly_once import shared_hosts, verdict, wait_learned
from fedrift.faults import BROKER, run_with_kills
from fedrift.kafka_io import TXN_HUNG_S
from fedrift.pipeline import Pipeline
from fedrift.provision import provision

pytestmark = pytest.mark.integration

N, RATE = 50_000, 700.0


def _guard_exits(log: Path) -> int:
    """How often a process ended itself on a hung transactional call (faulthandler's banner)."""
    banner = f"Timeout ({datetime.timedelta(seconds=TXN_HUNG_S)})!"
    return log.read_text(errors="replace").count(banner) if log.is_file() else 0


def _start_failures(log: Path) -> int:
    """How often a Faust worker, restarted while a broker was down, failed to start because it
    asked that broker (aiokafka's NodeNotReadyError) and exited for the supervisor to retry."""
    return log.read_text(errors="replace").count("[^Worker]: Error: NodeNotReadyError") if log.is_file() else 0


def test_sigkill_of_hosts_and_the_faust_worker_loses_and_repeats_nothing(kafka3, tmp_path):
    settings = for_cluster(Settings(
        topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
        home=tmp_path / "home",
        models=("gnb", "linear"),
        replicas=2,
        partitions=4,
        n_features=5,
        checkpoint_every_s=1.0,
    ), kafka3)
    catalog = provision(settings)
    kills = {
        N // 6: "host-gnb-0",
        2 * N // 6: "streams-controller",
        3 * N // 6 + 1500: "host-linear-1",  # the drift at N/2 triggers an HPO round: mid-round
        4 * N // 6: BROKER,
        5 * N // 6: "host-gnb-0",
    }
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        run = run_with_kills(pipeline, kafka3, catalog, N, RATE, kills)
        wait_learned(connect(settings, ADMIN), catalog, settings.models, N, timeout=300, supervise=pipeline.supervise,
                     hosts=shared_hosts(settings))
        restarts = pipeline.supervise()
        logs = {name: tmp_path / "logs" / f"{name}.log" for name in pipeline.children}
        guard_exits = {name: _guard_exits(log) + _start_failures(log) for name, log in logs.items()}
        acked = sorted(run["acked"])
        result = verdict(connect(settings, ADMIN), catalog, acked, acked, settings.models, timeout=180,
                         hosts=shared_hosts(settings))
    assert len(acked) == N and len(run["killed"]) == len(kills), run["killed"]
    killed = {"host-gnb-0": 2, "streams-controller": 1, "host-linear-1": 1}
    for name in set(killed) | set(restarts):
        extra = restarts.get(name, 0) - killed.get(name, 0)
        hung = guard_exits.get(name, 0)
        assert extra == hung >= 0, (name, restarts, guard_exits)  # every other exit is a failure
    assert not result.missing and not result.duplicated and not result.unexpected, (
        len(result.missing), result.duplicated[:5], result.unexpected[:5]
    )
    assert result.learned == {m: N for m in settings.models}, result.learned
    assert all(result.digest_ok.values()), result.digest_ok
    # shared training: each host also learned the other replica's partitions, each label once
    hosts = {f"{m}-{r}" for m in settings.models for r in range(settings.replicas)}
    assert set(result.host_digest_ok) == hosts and all(result.host_digest_ok.values()), result.host_digest_ok

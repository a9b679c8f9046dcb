"""A host killed again while it replays after a restart answers nothing twice.

A restarted host reads its partitions again from its checkpoint, silently up to what is already
committed. Until it has caught up with every partition, its read position in some partition is
behind the committed offset; a transaction in that window must not commit that position (it
would move the committed offset back, and a restart in that window would answer the stretch
again). The checkpoint here is taken once per process, after its first batch, so the replay is
long; the host is killed again right after the restarted process's first checkpoint. Then, per
request id: exactly one prediction, every label learned once.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from fedrift import datasets
from fedrift.exactly_once import verdict, wait_learned
from fedrift.kafka_io import RecordProducer
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from tests.integration.conftest import admin, client, ensure_topics

pytestmark = pytest.mark.integration

N = 12_000
HOST = "host-linear-0"


def _kill_and_restart(pipeline: Pipeline, timeout: float = 60.0) -> None:
    pipeline.kill(HOST)
    pipeline.ready_file(HOST).unlink()
    deadline = time.monotonic() + timeout
    while not pipeline.ready_file(HOST).exists() and time.monotonic() < deadline:
        pipeline.supervise()
        time.sleep(0.05)
    assert pipeline.ready_file(HOST).exists(), "the host did not come back"


def _written(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _when_checkpointed_again(path: Path, timeout: float = 60.0) -> None:
    """Return as soon as the host has written a new checkpoint (an atomic rename: a new inode)."""
    before, deadline = _written(path), time.monotonic() + timeout
    while _written(path) == before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _written(path) != before, "the restarted host wrote no checkpoint"


def _last_resume(log: str) -> str:
    return [line for line in log.splitlines() if " resumes at " in line][-1]


def _positions(line: str) -> tuple[dict[str, int], dict[str, int]]:
    """The checkpoint positions and the replay bound of a host's "resumes at" log line."""
    def parse(part: str) -> dict[str, int]:
        return {} if part.strip() == "nothing" else {
            k: int(v) for k, v in (item.split("=") for item in part.strip().split(", "))}
    at, until = line.split(" resumes at ")[1].split(" and replays silently up to ")
    return parse(at), parse(until)


def test_a_host_killed_during_its_replay_answers_nothing_twice(settings, tmp_path):
    # a stream without drift: an HPO round would checkpoint the host when it ends
    rows = list(datasets.synthetic("waveform", N, seed=4))
    settings = dataclasses.replace(settings, models=("linear",), replicas=1, checkpoint_every_s=3600.0,
                                   n_features=len(rows[0][0]))
    catalog = ensure_topics(settings)
    events = list(request_events(rows, run_id="replay"))
    ids = [v["id"] for base, _, v in events if base == "inference.requests"]
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        produce(RecordProducer(client(settings)), catalog, events)
        wait_learned(admin(settings), catalog, settings.models, N, timeout=180, supervise=pipeline.supervise)
        state = settings.home / "hosts" / f"{settings.topic_prefix}linear-0.state"
        _kill_and_restart(pipeline)  # its only checkpoint is from its first batch: the replay is ~N records
        # the restarted host checkpoints after its first batch (~500 records into its replay) and
        # not again: killed right then, its next start resumes there, far behind the bound
        _when_checkpointed_again(state)
        _kill_and_restart(pipeline)
        wait_learned(admin(settings), catalog, settings.models, N, timeout=180, supervise=pipeline.supervise)
        result = verdict(admin(settings), catalog, ids, ids, settings.models, timeout=120)
    log = (tmp_path / "logs" / f"{HOST}.log").read_text()
    assert log.count("restored its checkpoint") == 2, log[-3000:]
    # the second kill landed mid-replay: the third start resumed behind what was committed
    resumed, bound = _positions(_last_resume(log))
    assert any(resumed.get(tp, -1) < o for tp, o in bound.items()), (resumed, bound)
    assert not result.missing and not result.duplicated and not result.unexpected, (
        len(result.missing), len(result.duplicated), result.duplicated[:5]
    )
    assert result.learned == {"linear": N} and result.digest_ok == {"linear": True}, result

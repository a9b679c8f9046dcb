"""Exactly-once per request id while fedrift processes are SIGKILLed and restarted.

The whole pipeline (Faust worker and model hosts, supervised by ``Pipeline``) serves a labelled
stream (a third of the labels late, on ``inference.feedback``); meanwhile a host of each model and
the Faust worker are killed with SIGKILL, mid-transaction or not, and restarted by the
supervisor. Then, per request id: exactly one read_committed prediction for every acked request,
and each model learned each label exactly once (the hosts' learned-id digests).
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from fedrift import datasets
from fedrift.kafka_io import RecordProducer
from fedrift.pipeline import Pipeline
from fedrift.topics import FEEDBACK, REQUESTS
from tests.integration.chaos import verdict, wait_learned
from tests.integration.conftest import ensure_topics

pytestmark = pytest.mark.integration

N, LATE_EVERY, DELAY = 12_000, 3, 25


def labelled_stream(n: int, run_id: str):
    """(topic base, record, value): every third label comes late, ``DELAY`` requests later."""
    late = []
    for i, (x, y) in enumerate(datasets.synthetic("shift", n, seed=11)):
        rid = f"{run_id}-{i}"
        inline = i % LATE_EVERY != 0
        yield REQUESTS, "InferenceRequest", {"id": rid, "event_time": i, "features": x, "label": y if inline else None}
        if not inline:
            late.append((i, {"id": rid, "label": y, "time": i}))
        while late and late[0][0] <= i - DELAY:
            yield FEEDBACK, "Feedback", late.pop(0)[1]
    for _, fb in late:
        yield FEEDBACK, "Feedback", fb


def produce_paced(settings, catalog, events, rate: float, progress: dict) -> None:
    producer = RecordProducer(settings.bootstrap)
    t0 = time.monotonic()
    for base, record, value in events:
        producer.send(catalog.name(base), record, value, key=value["id"])
        if base == REQUESTS:
            progress["sent"] += 1
            ahead = progress["sent"] / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    progress["done"] = True


def test_sigkill_of_hosts_and_the_faust_worker_loses_and_repeats_nothing(settings, tmp_path):
    settings = dataclasses.replace(
        settings, models=("gnb", "linear"), replicas=2, partitions=4, n_features=5, checkpoint_every_s=1.0
    )
    catalog = ensure_topics(settings)
    kills = {N // 5: "host-gnb-0", 2 * N // 5: "streams", 3 * N // 5: "host-linear-1", 4 * N // 5: "host-gnb-0"}
    progress = {"sent": 0, "done": False}
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        thread = threading.Thread(
            target=produce_paced, args=(settings, catalog, labelled_stream(N, "chaos"), 600.0, progress), daemon=True
        )
        thread.start()
        while not progress["done"]:
            due = [at for at in kills if progress["sent"] >= at]
            for at in due:
                pipeline.kill(kills.pop(at))
            pipeline.supervise()
            time.sleep(0.05)
        assert not kills
        wait_learned(settings.bootstrap, catalog, settings.models, N, timeout=180, supervise=pipeline.supervise)
        restarts = pipeline.supervise()
        ids = [f"chaos-{i}" for i in range(N)]
        result = verdict(settings.bootstrap, catalog, ids, ids, settings.models, timeout=120)
    assert restarts == {"host-gnb-0": 2, "streams": 1, "host-linear-1": 1}, restarts
    assert not result.missing and not result.duplicated and not result.unexpected, (
        len(result.missing), result.duplicated[:5], result.unexpected[:5]
    )
    assert result.learned == {m: N for m in settings.models}, result.learned
    assert all(result.digest_ok.values()), result.digest_ok

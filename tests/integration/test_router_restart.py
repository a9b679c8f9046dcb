"""The router keeps traffic matching the weights across a restart of its Faust worker: its deficit
counts are rebuilt from the served table, which Faust restores from its changelog."""

from __future__ import annotations

import pytest

from fedrift.core.router import DeficitRouter
from fedrift.kafka_io import RecordProducer, now_ms
from fedrift.topics import REQUESTS, ROUTING_WEIGHTS
from schemas import codec
from tests.integration.conftest import Worker, consume, ensure_topics

pytestmark = pytest.mark.integration

WEIGHTS = {"m1": 0.5, "m2": 0.3, "m3": 0.2}
BEFORE, AFTER = 3, 17  # a split where starting the counts over would miss the shares


def _counts(n: int, router: DeficitRouter | None = None) -> dict[str, int]:
    router = router or DeficitRouter(WEIGHTS)
    for _ in range(n):
        router.choose()
    return dict(router.counts)


def _served(settings, catalog, n: int, worker: Worker) -> dict[str, str]:
    """request id -> serving model, once ``n`` distinct requests were served."""

    def serving(msgs) -> dict[str, str]:
        out = {}
        for m in msgs:
            _, v = codec().decode(m.value(), expect="RoutedRequest")
            if v["serve"]:
                out[v["request"]["id"]] = v["model"]
        return out

    routed = [catalog.routed(m) for m in settings.models]
    try:
        msgs = consume(settings.bootstrap, routed, lambda m: len(serving(m)) >= n, worker=worker, settle=2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{worker.log_path.read_text()[-6000:]}") from None
    return serving(msgs)


def _send(producer: RecordProducer, catalog, ids: range) -> None:
    for i in ids:
        value = {"id": f"req-{i}", "event_time": now_ms(), "features": [0.1 * i, 1.0, -1.0], "label": i % 2}
        producer.send(catalog.name(REQUESTS), "InferenceRequest", value, key=value["id"])
    producer.flush()


def test_deficit_counts_survive_a_router_restart(settings, tmp_path):
    expected = _counts(BEFORE + AFTER)
    restarted_fresh = {m: a + b for (m, a), b in zip(_counts(BEFORE).items(), _counts(AFTER).values(), strict=True)}
    assert expected != restarted_fresh  # the test can tell resuming from starting over
    assert expected == {m: round(w * (BEFORE + AFTER)) for m, w in WEIGHTS.items()}

    catalog = ensure_topics(settings)
    producer = RecordProducer(settings.bootstrap)
    weights = {"version": 1, "time": now_ms(), "weights": WEIGHTS, "historical": WEIGHTS}
    weights |= {"alignment": WEIGHTS, "drift_compensation": WEIGHTS, "pruned": []}
    producer.send(catalog.name(ROUTING_WEIGHTS), "RoutingWeights", weights, key="weights")
    _send(producer, catalog, range(BEFORE))

    worker = Worker(settings, "router", tmp_path / "worker-1.log")
    try:
        first = _served(settings, catalog, BEFORE, worker)
    finally:
        worker.stop()
    assert len(first) == BEFORE

    _send(producer, catalog, range(BEFORE, BEFORE + AFTER))
    worker = Worker(settings, "router", tmp_path / "worker-2.log")
    try:
        served = _served(settings, catalog, BEFORE + AFTER, worker)
    finally:
        worker.stop()
    assert {k: served[k] for k in first} == first  # nothing re-routed elsewhere
    per_model = {m: sum(1 for v in served.values() if v == m) for m in settings.models}
    assert per_model == expected, (per_model, (tmp_path / "worker-2.log").read_text()[-2000:])

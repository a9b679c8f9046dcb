"""The whole pipeline on the real broker: a stream with an abrupt drift (inputs and concept) goes
in, with poison records mixed in; every stage must do its part, and no request is lost or served
twice."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from fedrift import datasets
from fedrift.core.replica import id_digest
from fedrift.exactly_once import learned, wait_learned
from fedrift.kafka_io import RecordProducer, read_compacted
from fedrift.monitor import PipelineMonitor, PipelineView
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.topics import MODEL_STATUS, REQUESTS
from schemas import codec
from tests.integration.conftest import admin, client, ensure_topics

pytestmark = pytest.mark.integration

N, CHANGE = 8000, 4000  # datasets.synthetic("shift", N) changes inputs and concept at N/2


def _complete_round(view, settings) -> str | None:
    """A round with metrics from every replica of every model and an aggregate for every model
    (it follows the metrics once the survivors answered the unmask request), if there is one yet."""
    everyone = {f"{m}-{r}" for m in settings.models for r in range(3)}
    for round_id in sorted({m["round_id"] for m in view.metrics}):
        aggregated = {a["model"] for a in view.aggregates if a["round_id"] == round_id}
        if {m["agent"] for m in view.metrics if m["round_id"] == round_id} == everyone and \
                aggregated == set(settings.models):
            return round_id
    return None


def _poison() -> dict[str, bytes]:
    """Records no stage can use, keyed by what is wrong with them."""
    good = codec().encode("InferenceRequest", {"id": "x", "event_time": 0, "features": [0.0] * 5, "label": 0})
    return {
        "poison-garbage": b"\x00\x00\x00",
        "poison-magic": b"\x09" + good[1:],
        "poison-nan": codec().encode(
            "InferenceRequest", {"id": "poison-nan", "event_time": 0, "features": [0.0, math.nan, 0, 0, 0], "label": 1}
        ),
        "poison-count": codec().encode(
            "InferenceRequest", {"id": "poison-count", "event_time": 0, "features": [0.0, 1.0], "label": 1}
        ),
    }


def _produce_with_poison(producer, catalog, poison: dict[str, bytes]) -> list[int]:
    """The drifting stream with the poison mixed in; returns when the new concept's first request
    was produced (by the clock)."""
    requests = catalog.name(REQUESTS)
    poison_at = dict(zip((1000, 2500, 5000, 7000), poison, strict=True))
    change_ms: list[int] = []

    def events():
        for i, ev in enumerate(request_events(list(datasets.synthetic("shift", N, seed=3)), run_id="e2e")):
            if i in poison_at:
                producer.send_raw(requests, poison[poison_at[i]], key=poison_at[i])
            if i == CHANGE:
                change_ms.append(int(time.time() * 1000))
            yield ev

    assert produce(producer, catalog, events(), rate=400) == N
    return change_ms


def _serve_until_decided(pipeline, monitor, producer, catalog, settings) -> tuple[PipelineView, int]:
    """Keep traffic flowing until a shadow is decided and a round is complete; returns the view and
    how many tail requests were added. Tails alternate between the two regimes, so each is a new
    drift (a new HPO round, another chance for a better configuration)."""
    extra, tails, view = 0, 0, monitor.poll(1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pipeline.check()
        view = monitor.poll(2)
        decided = [d for d in view.deployments if d["action"] in ("PROMOTE", "REJECT")]
        if decided and tails and view.n_predicted >= N + extra:
            break
        if view.n_predicted >= N + extra and tails < 6:
            both = list(datasets.synthetic("shift", 4000, seed=100 + tails))
            tail = both[:2000] if tails % 2 == 0 else both[2000:]
            # tails carry late labels (inference.feedback, 50 requests behind): each host must
            # hold what it predicted until the label arrives
            late = request_events(tail, run_id=f"tail{tails}", label_delay=50)
            extra += produce(producer, catalog, late, rate=400)
            tails += 1
    view = monitor.poll(3)
    # late labels (the tails) are still reaching the hosts: wait until they have them all
    wait_learned(admin(settings), catalog, settings.models, N + extra, timeout=120, supervise=pipeline.check)
    # a model's round may end seconds after another's (the slower model's metrics come later),
    # and its aggregate follows its survivors' answers to the unmask request
    deadline = time.monotonic() + 120
    while _complete_round(view, settings) is None and time.monotonic() < deadline:
        pipeline.check()
        view = monitor.poll(2)
    return view, extra


def test_drifting_stream_through_the_whole_pipeline(settings, tmp_path):
    settings = dataclasses.replace(
        settings,
        models=("linear", "gnb"),
        replicas=3,
        n_features=5,
        shadow_fraction=1.0,
        shadow_min_samples=100,
        shadow_max_samples=600,
        status_every=100,
    )
    catalog = ensure_topics(settings)
    poison = _poison()
    monitor = PipelineMonitor(admin(settings), catalog)
    logs = tmp_path / "logs"
    with Pipeline(settings, logs) as pipeline:
        pipeline.wait_ready()
        producer = RecordProducer(client(settings))
        change_ms = _produce_with_poison(producer, catalog, poison)
        view, extra = _serve_until_decided(pipeline, monitor, producer, catalog, settings)
    monitor.close()
    _check_drift(view, change_ms)
    _check_hpo(view, settings)
    _check_shadow(view, settings)
    _check_exactly_once(view, settings, catalog, N + extra, poison)
    _check_dead_letters(view, poison, logs)


def _check_drift(view: PipelineView, change_ms: list[int]) -> None:
    """Above threshold after the change, never before."""
    inputs = [d for d in view.drift if d["source"] == "input" or (d["source"] == "none" and d["threshold"] > 0)]
    over = [d["position"] for d in inputs if d["score"] > d["threshold"]]
    assert all(p > CHANGE for p in over), over
    triggers = [d for d in view.drift if d["drifted"]]
    # an error trigger is stamped with the analyzer's request count when the hosts' status reaches
    # it, and the analyzer may read requests thousands behind the hosts (its loop blocks for seconds
    # while it calibrates a new input reference on a busy machine): it must come after the change
    # was produced, by the clock
    assert triggers and all(d["position"] > CHANGE for d in triggers if d["source"] != "error")
    early = [d for d in triggers if d["source"] == "error" and d["time"] < change_ms[0]]
    assert not early, (early, change_ms)
    # the change is caught by the input detector, or first by the hosts' error detectors: an outcome
    # trigger re-learns the input reference, so the input score need not cross after it
    assert over or triggers[0]["source"] == "error", (over, triggers)


def _check_hpo(view: PipelineView, settings) -> None:
    """A round with DP metrics from every replica of every model, and its aggregates."""
    complete = _complete_round(view, settings)
    assert complete, sorted({(m["round_id"], m["agent"]) for m in view.metrics})
    metrics = [m for m in view.metrics if m["round_id"] == complete]
    assert all(m["epsilon_spent"] > 0 for m in metrics)
    clear = [m for m in metrics if m["masked_value"] is None]
    assert clear and all(
        abs(m["noised_quality"] * m["slice_size"] - round(m["noised_quality"] * m["slice_size"])) > 1e-9 for m in clear
    )  # Laplace noise: never a whole count of hits
    assert any(m["masked_value"] is not None for m in metrics)
    aggregates = {a["model"]: a for a in view.aggregates if a["round_id"] == complete}
    assert set(aggregates) == set(settings.models)
    assert all(len(a["agents"]) == 3 for a in aggregates.values())


def _check_shadow(view: PipelineView, settings) -> None:
    """Routing weights changed; a shadow started and was promoted or rejected, with its evidence."""
    distinct = {tuple(sorted((m, round(w, 3)) for m, w in w["weights"].items())) for _, w in view.weights}
    assert len(distinct) >= 2
    starts = [d for d in view.deployments if d["action"] == "SHADOW_START"]
    decisions = [d for d in view.deployments if d["action"] in ("PROMOTE", "REJECT")]
    assert starts and decisions
    d = decisions[0]
    assert d["model"] in {s["model"] for s in starts} and d["reason"]
    assert d["evidence"]["n"] >= settings.shadow_min_samples and {"wins", "losses"} <= set(d["evidence"])


def _check_exactly_once(view: PipelineView, settings, catalog, valid: int, poison: dict[str, bytes]) -> None:
    """Every model learned every label exactly once, inline or late (per id: the learned-id
    digests), and every valid request got exactly one production prediction."""
    labelled = [rid for rid, (_, label) in view.requests.items() if label is not None and rid not in poison]
    state = learned(admin(settings), catalog)
    digest = sum(id_digest(rid) for rid in labelled) % 2**64
    for model in settings.models:
        assert state[model] == (valid, digest), (model, state[model][0], valid)
    status = read_compacted(admin(settings), catalog.name(MODEL_STATUS))
    assert all(0 < s["n_correct"] <= s["n_seen"] for s in status.values())
    assert view.duplicates == 0
    assert view.n_predicted == valid
    assert set(view.predictions) == set(view.requests) - set(poison)


def _check_dead_letters(view: PipelineView, poison: dict[str, bytes], logs) -> None:
    """The DLQ holds exactly the injected poison records, and every other consumer of the topic
    skipped them: no processor or host ever crashed."""
    assert sorted(k.decode() for k, _, _ in view.dead_letters) == sorted(poison)
    for key, letter, headers in view.dead_letters:
        assert letter["raw"] == poison[key.decode()] and letter["error"] and headers["fedrift.error"]
    for log in logs.glob("*.log"):
        text = log.read_text()
        assert "Crashed" not in text and "Traceback" not in text, (log.name, text[-3000:])

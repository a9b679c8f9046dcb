"""Bad control records cannot take the pipeline down: each is dead-lettered once, on its topic's
DLQ, with the reason, while requests keep being served."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from fedrift import datasets
from fedrift.kafka_io import RecordProducer
from fedrift.monitor import PipelineMonitor
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.topics import (
    DEPLOYMENTS,
    HPO_AGGREGATES,
    HPO_METRICS,
    HPO_TRIGGERS,
    MODEL_STATUS,
    REQUESTS,
    SHADOW_RESULTS,
)
from schemas import codec
from tests.integration.conftest import admin, client, consume, ensure_topics
from tests.samples import SAMPLES

pytestmark = pytest.mark.integration


def _weights(**change) -> dict:
    return {"version": 10**6, "time": 0, "weights": {"gnb": 1.0, "linear": 1.0}, **change}


def _deployment(config_json: str) -> dict:
    return {**SAMPLES["Deployment"], "model": "gnb", "action": "SHADOW_START", "config_json": config_json}


# (topic base, key, record name or None for raw bytes, value, what the reason says)
BAD = [
    (REQUESTS, "w-inf", "RoutingWeights", _weights(weights={"gnb": math.inf}), "finite"),
    (REQUESTS, "w-neg", "RoutingWeights", _weights(weights={"gnb": -1.0, "linear": 2.0}), ">= 0"),
    (REQUESTS, "w-none", "RoutingWeights", _weights(weights={"other": 1.0}), "positive weight"),
    (DEPLOYMENTS, "d-unknown", "Deployment", _deployment('{"bogus": 1}'), "no hyperparameter"),
    (DEPLOYMENTS, "d-range", "Deployment", _deployment('{"window": 1}'), "outside its search space"),
    (DEPLOYMENTS, "d-json", "Deployment", _deployment("{not json"), "not JSON"),
    (DEPLOYMENTS, "d-bytes", None, b"\x00\x00\x00", "header needs 5"),
    (MODEL_STATUS, "s-range", "ModelStatus", {**SAMPLES["ModelStatus"], "window_quality": 7.0}, "outside [0, 1]"),
    (MODEL_STATUS, "s-count", "ModelStatus", {**SAMPLES["ModelStatus"], "n_seen": -4}, "impossible"),
    (HPO_METRICS, "m-zero", "TrialMetric", {**SAMPLES["TrialMetric"], "slice_size": 0}, "not positive"),
    (HPO_METRICS, "m-nan", "TrialMetric", {**SAMPLES["TrialMetric"], "masked_value": None, "noised_quality": math.nan},
     "finite"),
    (HPO_METRICS, "m-ring", "TrialMetric", {**SAMPLES["TrialMetric"], "masked_value": -7}, "2^62"),
    # well-formed, in a host's name, signed by nobody's key: a forgery any host principal could write
    (HPO_METRICS, "m-forged", "TrialMetric", SAMPLES["TrialMetric"], "not signed by its pinned key"),
    (HPO_TRIGGERS, "t-empty", "HpoTrigger", {**SAMPLES["HpoTrigger"], "round_id": ""}, "empty round_id"),
    (HPO_TRIGGERS, "t-bytes", None, b"garbage", "magic byte"),
    (HPO_AGGREGATES, "a-inf", "AggregateResult", {**SAMPLES["AggregateResult"], "score": math.inf}, "not finite"),
    (SHADOW_RESULTS, "r-lat", "ShadowResult", {**SAMPLES["ShadowResult"], "shadow_latency_ms": -1.0}, "non-negative"),
]


def test_each_bad_control_record_is_dead_lettered_once_and_serving_goes_on(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("gnb", "linear"), replicas=1, n_features=5, partitions=1)
    catalog = ensure_topics(settings)
    monitor = PipelineMonitor(admin(settings), catalog)
    producer = RecordProducer(client(settings))
    rows = list(datasets.synthetic("shift", 1200, seed=2))
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        produce(producer, catalog, request_events(rows[:600], run_id="before"), rate=600)
        insider = RecordProducer(admin(settings))  # a principal allowed on every control topic
        for base, key, record, value, _ in BAD:
            raw = value if record is None else codec().encode(record, value)
            insider.send_raw(catalog.name(base), raw, key=key)
        insider.flush()
        produce(producer, catalog, request_events(rows[600:], run_id="after"), rate=600)
        deadline = time.monotonic() + 90
        while monitor.poll(1).n_predicted < len(rows) and time.monotonic() < deadline:
            pipeline.supervise()
        dlqs = sorted({catalog.dlq(catalog.name(base)) for base, *_ in BAD})
        letters = consume(admin(settings), dlqs, lambda m: len(m) >= len(BAD), timeout=60, settle=3)
        restarts = pipeline.supervise()
    view = monitor.view
    monitor.close()
    assert view.n_predicted == len(rows) and view.duplicates == 0  # serving went on, weights untouched
    assert restarts == {}  # nothing crashed
    by_key = {}
    for msg in letters:
        by_key.setdefault(msg.key().decode(), []).append(msg)
    assert sorted(by_key) == sorted(key for _, key, *_ in BAD)
    for base, key, _, _, why in BAD:
        [msg] = by_key[key]  # exactly once
        _, letter = codec().decode(msg.value(), expect="DeadLetter")
        assert msg.topic() == catalog.dlq(catalog.name(base)) and why in letter["error"], (key, letter["error"])

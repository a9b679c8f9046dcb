"""10,000 requests through a real Faust worker, and poison records into the DLQ, on a real broker."""

from __future__ import annotations

import pytest

from fedrift.kafka_io import RecordProducer
from fedrift.topics import REQUESTS
from schemas import codec
from tests.integration.conftest import Worker, consume, ensure_topics

pytestmark = pytest.mark.integration


def _request(i: int) -> dict:
    return {"id": f"req-{i}", "event_time": 1_700_000_000_000 + i, "features": [i * 0.5, -i / 7.0, 1.0], "label": i % 2}


def test_ten_thousand_requests_through_a_faust_worker(settings, tmp_path):
    catalog = ensure_topics(settings)
    worker = Worker(settings, "router", tmp_path / "worker.log")
    try:
        producer = RecordProducer(settings.bootstrap)
        sent = {}
        for i in range(10_000):
            sent[f"req-{i}"] = _request(i)
            producer.send(catalog.name(REQUESTS), "InferenceRequest", sent[f"req-{i}"], key=f"req-{i}")
        assert producer.flush() == 10_000
        routed = [catalog.routed(m) for m in settings.models]
        # every model receives every request (to learn and evaluate); exactly one copy serves it
        total = 10_000 * len(routed)
        msgs = consume(settings.bootstrap, routed, lambda m: len(m) >= total, worker=worker, settle=3)
        assert len(msgs) == total
        received, serving = {}, {}
        for msg in msgs:
            _, value = codec().decode(msg.value(), expect="RoutedRequest")
            assert msg.key().decode() == value["request"]["id"]
            assert msg.topic() == catalog.routed(value["model"])
            received.setdefault(value["request"]["id"], []).append(value["request"])
            if value["serve"]:
                serving.setdefault(value["request"]["id"], []).append(value["model"])
        assert received.keys() == sent.keys() == serving.keys()
        assert all(v == [sent[k]] * len(routed) for k, v in received.items())
        assert all(len(v) == 1 for v in serving.values())
        per_model = [sum(1 for v in serving.values() if v[0] == m) for m in settings.models]
        assert max(per_model) - min(per_model) <= 1  # uniform weights, deficit rule
    finally:
        worker.stop()


def test_poison_records_go_to_the_dlq_and_the_rest_still_arrive(settings, tmp_path):
    catalog = ensure_topics(settings)
    worker = Worker(settings, "router", tmp_path / "worker.log")
    requests_topic = catalog.name(REQUESTS)
    valid = codec().encode("InferenceRequest", _request(1))
    poison = {
        "bad-magic": (b"\x05" + valid[1:], "BadMagicByte"),
        "truncated": (valid[:9], "TruncatedRecord"),
        "not-avro": (b"hello, world", "BadMagicByte"),
        "nan": (
            codec().encode("InferenceRequest", {**_request(2), "features": [float("nan"), 1.0, 2.0]}),
            "NonFiniteFeature",
        ),
        "too-few": (
            codec().encode("InferenceRequest", {**_request(3), "features": [1.0, 2.0]}),
            "FeatureCountMismatch",
        ),
        "wrong-record": (codec().encode("Feedback", {"id": "x", "label": 1, "time": 0}), "SchemaMismatch"),
    }
    try:
        producer = RecordProducer(settings.bootstrap)
        poison_at = {50 + 100 * j: key for j, key in enumerate(poison)}  # spread through the stream
        good_ids = []
        for i in range(600):
            if i in poison_at:
                producer.send_raw(requests_topic, poison[poison_at[i]][0], key=poison_at[i])
            producer.send(requests_topic, "InferenceRequest", _request(i), key=f"req-{i}")
            good_ids.append(f"req-{i}")
        assert producer.flush() == 600 + len(poison)
        routed = consume(
            settings.bootstrap,
            [catalog.routed(m) for m in settings.models],
            lambda m: len(m) >= 600 * len(settings.models),
            worker=worker,
            settle=2,
        )
        assert len(routed) == 600 * len(settings.models)
        serving = [v for v in (codec().decode(m.value())[1] for m in routed) if v["serve"]]
        assert sorted(v["request"]["id"] for v in serving) == sorted(good_ids)
        dlq = consume(
            settings.bootstrap, [catalog.dlq(requests_topic)], lambda m: len(m) >= len(poison), worker=worker, settle=2
        )
        assert len(dlq) == len(poison)
        by_key = {m.key().decode(): m for m in dlq}
        assert set(by_key) == set(poison)
        for key, (raw, error_type) in poison.items():
            msg = by_key[key]
            _, letter = codec().decode(msg.value(), expect="DeadLetter")
            headers = dict(msg.headers())
            assert letter["error_type"] == error_type, (key, letter)
            assert letter["raw"] == raw and letter["source_topic"] == requests_topic
            assert headers["fedrift.error"].decode() == letter["error"] and letter["error"]
            assert headers["fedrift.source"].decode() == (
                f"{requests_topic}/{letter['source_partition']}/{letter['source_offset']}"
            )
    finally:
        worker.stop()

"""Late labels through a real router worker: a label that overtakes its request is held and
forwarded right after the request, to every model, in that order."""

from __future__ import annotations

import pytest

from fedrift.kafka_io import RecordProducer, now_ms
from fedrift.topics import FEEDBACK, REQUESTS
from schemas import codec
from tests.integration.conftest import Worker, consume, ensure_topics

pytestmark = pytest.mark.integration


def test_a_label_that_arrives_before_its_request_is_held_then_forwarded(settings, tmp_path):
    catalog = ensure_topics(settings)
    producer = RecordProducer(settings.bootstrap)
    worker = Worker(settings, "router", tmp_path / "worker.log")
    try:
        t = now_ms()
        producer.send(catalog.name(FEEDBACK), "Feedback", {"id": "early", "label": 1, "time": t}, key="early")
        producer.flush()
        routed = [catalog.routed(m) for m in settings.models]
        # the feedback agent has seen it (nothing to forward yet) once a later request is routed
        producer.send(
            catalog.name(REQUESTS),
            "InferenceRequest",
            {"id": "marker", "event_time": t, "features": [0.0, 0.0, 0.0], "label": 0},
            key="marker",
        )
        producer.flush()
        consume(settings.bootstrap, routed, lambda m: len(m) >= len(routed), worker=worker, settle=3)
        producer.send(
            catalog.name(REQUESTS),
            "InferenceRequest",
            {"id": "early", "event_time": t, "features": [1.0, 2.0, 3.0], "label": None},
            key="early",
        )
        producer.flush()
        n = 3 * len(routed)  # marker, then the request and its label for every model
        msgs = consume(settings.bootstrap, routed, lambda m: len(m) >= n, worker=worker, settle=3)
    finally:
        worker.stop()
    assert len(msgs) == n
    for topic in routed:
        values = [codec().decode(m.value())[1] for m in msgs if m.topic() == topic and m.key() == b"early"]
        assert [(v["feedback"], v["request"]["label"]) for v in values] == [(False, None), (True, 1)]

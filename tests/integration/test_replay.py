"""Replay: export inference.requests to an Avro file and play it into a fresh topic, byte-exact."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from fedrift.kafka_io import RecordProducer, create_topics, now_ms
from fedrift.replay import export, play
from fedrift.topics import REQUESTS, ResolvedTopic
from tests.integration.conftest import admin, client, ensure_topics

pytestmark = pytest.mark.integration


def _recent() -> int:
    """A base timestamp a minute ago: records stamped years back would be deleted by the broker's
    retention check (every 60 s) while the test reads them."""
    return now_ms() - 60_000


def _all(conn, topic, n):
    import time

    c = Consumer(conn.conf(**{"group.id": conn.group("test"), "auto.offset.reset": "earliest", "log_level": 3}))
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got += [m for m in c.consume(500, 0.5) if m.error() is None]
    c.close()
    return got


def test_export_then_play_keeps_values_keys_timestamps_and_headers(settings, tmp_path):
    catalog = ensure_topics(settings)
    source = catalog.name(REQUESTS)
    producer, recent = RecordProducer(client(settings)), _recent()
    for i in range(500):
        producer.send(
            source,
            "InferenceRequest",
            {"id": f"r{i}", "event_time": i, "features": [i / 3, -i], "label": i % 2},
            key=f"r{i}",
            headers=[("trace", f"t{i}".encode())] if i % 5 == 0 else None,
            timestamp_ms=recent + i * 10,
        )
    producer.flush()
    path = tmp_path / "requests.avro"
    assert export(admin(settings), source, path) == 500
    target = f"{settings.topic_prefix}replayed"
    create_topics(
        admin(settings), [ResolvedTopic(target, "InferenceRequest", settings.partitions, 1, "delete", None)]
    )
    assert play(admin(settings), path, target, pace="fast") == 500

    def snapshot(msgs):
        return sorted((m.partition(), m.key(), m.value(), m.timestamp()[1], tuple(m.headers() or [])) for m in msgs)

    original, replayed = _all(admin(settings), source, 500), _all(admin(settings), target, 500)
    assert len(replayed) == 500
    assert snapshot(replayed) == snapshot(original)
    # per-partition order is kept too
    for p in range(settings.partitions):
        assert [m.key() for m in original if m.partition() == p] == [m.key() for m in replayed if m.partition() == p]


def test_recorded_pace_waits_the_recorded_gaps(settings, tmp_path):
    import time

    topic = f"{settings.topic_prefix}paced"
    create_topics(admin(settings), [ResolvedTopic(topic, "Feedback", 1, 1, "delete", None)])
    producer, recent = RecordProducer(admin(settings)), _recent()  # a topic outside the catalog
    for i in range(5):
        producer.send(
            topic,
            "Feedback",
            {"id": str(i), "label": 1, "time": i},
            key=str(i),
            timestamp_ms=recent + i * 300,
        )
    producer.flush()
    path = tmp_path / "paced.avro"
    assert export(admin(settings), topic, path) == 5
    t0 = time.monotonic()
    play(admin(settings), path, f"{settings.topic_prefix}paced2", pace="recorded")
    assert time.monotonic() - t0 >= 1.2 - 0.05  # 4 gaps of 300 ms

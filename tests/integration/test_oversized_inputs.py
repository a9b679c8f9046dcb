"""Inputs near the broker's size limit are dead-lettered, and the host goes on serving.

A dead letter copies the record it is about, and a prediction repeats the request id as its key
and in its value; either could exceed the producer's message size, the batch could then never
commit, and the host would retry it for ever while its partitions go unanswered. Here an
undecodable request of ~1 MB and a valid request whose id is 600 KB arrive between ordinary
requests: both are dead-lettered with their reason, every ordinary request is answered.
"""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka import Producer

from fedrift.exactly_once import predictions
from fedrift.kafka_io import RecordProducer, now_ms, read_to_end
from fedrift.topics import REQUESTS
from schemas import codec
from tests.integration.conftest import admin, client, ensure_topics, host_process

pytestmark = pytest.mark.integration


def test_a_near_limit_input_is_dead_lettered_and_the_rest_answered(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("linear",), replicas=1, partitions=1, n_features=2)
    catalog = ensure_topics(settings)
    requests = catalog.name(REQUESTS)
    with host_process(settings, tmp_path) as (host, log):
        producer = RecordProducer(client(settings))
        big = Producer(client(settings).conf(**{"message.max.bytes": 1_040_000}))

        def ordinary(i: int) -> None:
            producer.send(requests, "InferenceRequest",
                          {"id": f"r{i}", "event_time": now_ms(), "features": [float(i % 7), 1.0], "label": i % 2},
                          key=f"r{i}")

        for i in range(50):
            ordinary(i)
        producer.flush()
        big.produce(requests, b"\x07" * 1_030_000, b"junk")
        long_id = codec().encode("InferenceRequest", {"id": "x" * 600_000, "event_time": 1, "features": [1.0, 1.0],
                                                      "label": None})
        big.produce(requests, long_id, b"long")
        assert big.flush(30) == 0
        for i in range(50, 100):
            ordinary(i)
        producer.flush()
        seen = predictions(admin(settings), catalog, 100, timeout=60)
        letters = [codec().decode(m.value())[1] for m in read_to_end(admin(settings), catalog.dlq(requests))]
        alive = host.poll() is None
    text = log.read_text(errors="replace")
    assert alive and "transaction failed" not in text, text[-3000:]
    assert sorted(seen) == sorted(f"r{i}" for i in range(100)) and set(seen.values()) == {1}
    assert sorted(d["key"] for d in letters) == [b"junk", b"long"], [d["error"] for d in letters]
    assert any("600000 characters" in d["error"] for d in letters)

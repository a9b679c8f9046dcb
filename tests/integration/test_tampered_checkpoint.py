"""A tampered checkpoint is refused before it is unpickled, and the host starts from the stream.

The host's checkpoint holds its models and raw local data and is authenticated with a key only
the host holds. Here a byte of a real checkpoint is flipped between two runs of a host: the
restarted host must log the refusal, rebuild its state by replaying its partitions from the
start (outputs off up to the committed offsets), and still answer every request exactly once and
learn every label exactly once."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fedrift.exactly_once import verdict, wait_learned
from fedrift.kafka_io import RecordProducer, now_ms
from fedrift.topics import REQUESTS
from tests.integration.conftest import admin, client, ensure_topics, host_process

pytestmark = pytest.mark.integration


def test_a_tampered_checkpoint_is_refused_and_the_host_rebuilds_from_the_stream(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("linear",), replicas=1, partitions=1, n_features=2,
                                   checkpoint_every_s=0.2)
    catalog = ensure_topics(settings)
    producer = RecordProducer(client(settings))
    state = settings.home / "hosts" / f"{settings.topic_prefix}linear-0.state"
    for run in ("first", "second"):
        (tmp_path / run).mkdir()

    def requests(ids: range) -> list[str]:
        for i in ids:
            producer.send(catalog.name(REQUESTS), "InferenceRequest",
                          {"id": f"r{i}", "event_time": now_ms(), "features": [float(i % 7), 1.0], "label": i % 2},
                          key=f"r{i}")
        producer.flush()
        return [f"r{i}" for i in ids]

    with host_process(settings, tmp_path / "first"):
        sent = requests(range(200))
        deadline = time.monotonic() + 60
        while not state.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a checkpoint after the last batch
    data = bytearray(state.read_bytes())
    data[-10] ^= 0xFF
    state.write_bytes(bytes(data))
    with host_process(settings, tmp_path / "second") as (_, log):
        sent += requests(range(200, 300))
        wait_learned(admin(settings), catalog, settings.models, len(sent), timeout=60)
        result = verdict(admin(settings), catalog, sent, sent, settings.models, timeout=60)
        text = log.read_text()
    assert "fails authentication" in text and "budget counted as spent" in text, text[-3000:]
    assert "replayed its history without its ε ledger: positions up to 200 count as spent" in text, text[-3000:]
    assert not result.missing and not result.duplicated, (result.missing[:5], result.duplicated[:5])
    assert result.learned == {"linear": 300} and all(result.digest_ok.values()), result.learned

"""A host that recovers in-process from a failed transaction reads its labels again.

The host pauses its label partitions while more labels than it may hold are ahead of their
requests. A partition paused in librdkafka stays paused across ``assign()``: recovery from a
failed transaction (abort, reload the checkpoint, seek back) must resume them, or the host stops
learning for good. Here a commit fails (injected) exactly while labels are paused; afterwards
every label must still be learned.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from fedrift.exactly_once import learned
from fedrift.kafka_io import RecordProducer, now_ms
from fedrift.topics import FEEDBACK, REQUESTS
from tests.integration.conftest import admin, client, ensure_topics, host_process

pytestmark = pytest.mark.integration


def test_labels_paused_before_a_failed_transaction_are_read_again(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("linear",), replicas=1, partitions=1, n_features=2,
                                   pending_labels=50, checkpoint_every_s=3600.0)
    catalog = ensure_topics(settings)
    producer = RecordProducer(client(settings))

    def request(i: int, label) -> None:
        producer.send(catalog.name(REQUESTS), "InferenceRequest",
                      {"id": f"r{i}", "event_time": now_ms(), "features": [float(i % 7), 1.0], "label": label},
                      key=f"r{i}")

    with host_process(settings, tmp_path, "tests.integration.faulty_host") as (_, log):
        for i in range(20):  # labelled inline: the first commit and the host's only checkpoint
            request(i, i % 2)
        producer.flush()
        time.sleep(3)
        for i in range(100, 400):  # 300 labels ahead of their requests: more than the 50 it may hold
            producer.send(catalog.name(FEEDBACK), "Feedback", {"id": f"r{i}", "label": i % 2, "time": now_ms()},
                          key=f"r{i}")
        producer.flush()
        time.sleep(3)
        for i in range(20, 40):  # this batch's commit fails while labels are paused: abort, recover
            request(i, i % 2)
        producer.flush()
        time.sleep(3)
        for i in range(100, 400):  # the requests those labels belong to
            request(i, None)
        producer.flush()
        deadline, got = time.monotonic() + 60, 0
        while got < 340 and time.monotonic() < deadline:
            time.sleep(2)
            got = learned(admin(settings), catalog).get("linear", (0, 0))[0]
    text = log.read_text()
    assert "injected: commit_transaction timed out" in text and "labels paused" in text, text[-3000:]
    assert got == 340, (got, text[-3000:])  # 40 labelled inline + 300 late, each once

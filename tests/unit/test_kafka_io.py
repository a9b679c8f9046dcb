"""Kafka helpers without a broker: the hang guard for transactional calls ends the process, and
only when the call hangs; a dead letter always fits the producer's size limit."""

from __future__ import annotations

import subprocess
import sys
import time

from fedrift.kafka_io import DLQ_COPY_BYTES, dead_letter
from fedrift.topics import TopicCatalog
from schemas import InvalidRecord, codec

SCRIPT = """
import time
from fedrift.kafka_io import exit_if_hung
with exit_if_hung(0.5):
    time.sleep({sleep})
time.sleep(1)  # past the guard: it must be off by now
print("returned")
"""


def _run(sleep: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(sleep=sleep)], capture_output=True, text=True,
                          timeout=60)


def test_a_call_that_hangs_past_the_guard_ends_the_process_with_its_stack():
    t0 = time.monotonic()
    done = _run(sleep=30)
    assert done.returncode == 1 and "returned" not in done.stdout
    assert "time.sleep" in done.stderr or "<string>" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 20


def test_a_call_that_returns_in_time_cancels_the_guard():
    done = _run(sleep=0.1)
    assert done.returncode == 0 and "returned" in done.stdout


def test_a_dead_letter_of_a_record_near_the_size_limit_stays_far_below_it():
    raw, key = b"\x07" * 1_030_000, b"k" * 600_000
    topic, value, headers = dead_letter(TopicCatalog("p."), "p.inference.requests", 2, 41, key, raw,
                                        InvalidRecord("no schema id " + "x" * 10_000), "linear-0")
    letter = codec().decode(value)[1]
    assert topic == "p.inference.requests.dlq" and len(value) < 3 * DLQ_COPY_BYTES
    assert letter["raw"] == raw[:DLQ_COPY_BYTES] and letter["key"] == key[:DLQ_COPY_BYTES]
    assert "record of 1030000 bytes" in letter["error"] and letter["source_offset"] == 41
    assert sum(len(v) for _, v in headers) < 4096

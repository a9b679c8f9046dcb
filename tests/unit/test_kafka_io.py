"""The hang guard for transactional calls ends the process, and only when the call hangs."""

from __future__ import annotations

import subprocess
import sys
import time

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

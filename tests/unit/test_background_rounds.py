"""The simulator's rounds worker: replaced when it dies, and never keeps its parent from exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from fedrift import background_rounds
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger


def _agent() -> FhpoAgent:
    return FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(), seed=0, noise_seed=0)


def test_a_dead_worker_is_replaced_for_the_next_round():
    executor = background_rounds.shared_executor()
    pid = executor.submit(os.getpid).result()
    os.kill(pid, signal.SIGKILL)  # the OOM killer, or the thread that started it ended
    deadline = time.monotonic() + 10
    while not getattr(executor, "_broken", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = background_rounds.run_in_background(_agent(), "r1", {}, [], "", background_rounds.shared_executor())
    assert pending.result()[0].status == "not enough data"


def test_a_simulation_inside_another_pools_worker_lets_that_pool_close():
    # a pool worker joins its children before it exits: the rounds worker must be gone by then
    script = textwrap.dedent("""
        import os
        from concurrent.futures import ProcessPoolExecutor

        def job(_):
            from fedrift.background_rounds import shared_executor
            return shared_executor().submit(os.getpid).result() != os.getpid()

        if __name__ == "__main__":
            with ProcessPoolExecutor(1) as pool:
                print(list(pool.map(job, [0, 1])))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[True, True]", proc.stderr

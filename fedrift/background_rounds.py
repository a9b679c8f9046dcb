"""The simulator's hosts run their FHPO rounds in a worker process while the simulation goes on
serving, as each pipeline host runs its rounds beside serving (``agents.federated``).

A round is a pure function of the agent (its ledger and generators travel with it) and the
events it tunes on, so running it in another process gives the result it gives in-process; only
the wall time changes: on two cores the optimisation of the 12 agents of a 4-model, 3-replica
pool overlaps the serving of the requests that follow its trigger. A host's next round starts
from the agent its previous round returned (``Pending.agent`` waits for it), as in the pipeline.

>>> from fedrift.core.fhpo import FhpoAgent, FhpoConfig
>>> from fedrift.core.models import FAMILIES
>>> from fedrift.core.privacy import PrivacyLedger
>>> agent = FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(), seed=0, noise_seed=0)
>>> pending = run_in_background(agent, "r1", {}, [], "", executor=None)  # None: in this process
>>> outcome, agent_after, spent = pending.result()
>>> outcome.status, spent
('not enough data', 0.0)
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context, util

from fedrift.core.fhpo import FhpoAgent, RoundOutcome

_EXECUTOR: ProcessPoolExecutor | None = None


def _worker_init(parent_pid: int) -> None:
    from fedrift.pipeline import die_with_parent

    die_with_parent(parent_pid)


def shared_executor() -> ProcessPoolExecutor:
    """One worker process for every simulation in this process; a new one if it died (killed, or
    with the thread that started it). Forked where the platform can (no re-import of the caller's
    script, which a spawned worker would run again unless it is guarded by ``if __name__ ==
    "__main__"``). It is stopped at exit by a finaliser that runs before multiprocessing joins its
    children, so a simulation inside another pool's worker lets that worker exit."""
    global _EXECUTOR
    if _EXECUTOR is None or getattr(_EXECUTOR, "_broken", False):
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        _EXECUTOR = ProcessPoolExecutor(1, mp_context=get_context(method), initializer=_worker_init,
                                        initargs=(os.getpid(),))
        util.Finalize(_EXECUTOR, _EXECUTOR.shutdown, kwargs={"wait": True, "cancel_futures": True}, exitpriority=100)
    return _EXECUTOR


Done = tuple[RoundOutcome, FhpoAgent, float]  # the outcome, the agent after it, what it had spent then


def _run(agent: FhpoAgent, round_id: str, config: dict, events: list, design: str) -> Done:
    outcome = agent.run_round(round_id, config, events, design)
    return outcome, agent, agent.ledger.max_loss


@dataclass
class Pending:
    """A round on its way: its outcome, the agent after it and what it had spent, once done."""

    future: Future | None
    done: Done | None = None

    def result(self) -> Done:
        if self.done is None:
            assert self.future is not None
            self.done = self.future.result()
        return self.done

    @property
    def agent(self) -> FhpoAgent:
        return self.result()[1]

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()


def run_in_background(agent: FhpoAgent, round_id: str, config: dict, events: list, design: str,
                      executor: Executor | None) -> Pending:
    """Start the round (in this process at once when ``executor`` is None)."""
    if executor is None:
        return Pending(None, _run(agent, round_id, config, events, design))
    try:
        return Pending(executor.submit(_run, agent, round_id, config, events, design))
    except BrokenProcessPool:  # the worker died since the executor was handed out: a new one
        return Pending(shared_executor().submit(_run, agent, round_id, config, events, design))

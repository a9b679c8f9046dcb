"""A host's side of federated HPO: run its FHPO agent's rounds beside serving, mask the metrics
for secure aggregation (``fedrift.core.masking``), and answer the aggregator's unmask request.

It produces records (``Output``) and leaves sending them, inside a transaction, to the host.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from fedrift import json_config
from fedrift.core.fhpo import FhpoAgent, LocalWindow, RoundOutcome
from fedrift.core.masking import SecureAggregation
from fedrift.core.records import Output
from fedrift.pipeline import die_with_parent
from fedrift.private_files import write_private
from fedrift.topics import HPO_KEYS, HPO_METRICS
from schemas.records import RoundKeys, TrialMetric, UnmaskRequest

log = logging.getLogger(__name__)


def _lower_priority(host_pid: int) -> None:
    """Runs in the worker: yield the CPU to serving, and die with the host (even a SIGKILLed one,
    even one killed while this worker was starting)."""
    os.nice(10)
    die_with_parent(host_pid)


def run_round(agent: FhpoAgent, trigger: dict, config: dict, events: list) -> tuple[RoundOutcome, FhpoAgent]:
    """One FHPO round (in the worker process); the agent is returned with its updated ledger."""
    return agent.run_round(trigger["round_id"], config, events, trigger["design"]), agent


class FederatedRounds:
    def __init__(self, agent: FhpoAgent, model: str, host_id: str, secure: SecureAggregation,
                 key_wait_s: float = 10.0, answers_path: Path | None = None) -> None:
        self.agent, self.model, self.host_id, self.secure = agent, model, host_id, secure
        self.answers_path = answers_path  # the journal of each round's first unmask request
        self.key_wait_s = key_wait_s  # how long a finished round waits for its peers' round keys
        self.done: list[tuple[dict, RoundOutcome, float]] = []  # finished rounds not yet handed over, with deadlines
        # shared metrics leave only masked: the sum of the survivors' shares carries the noise
        agent.noise_shares = secure.noise_shares if agent.config.distributed_noise else 1
        self.waiting: list[dict] = []
        self.running: tuple[dict, Future] | None = None
        self.executor: ProcessPoolExecutor | None = None

    def on_trigger(self, trigger: dict) -> list[Output]:
        """Queue the round and send this host's round keys at once: the peers need them before
        any of them finishes its round and masks."""
        self.waiting.append(trigger)
        keys = self.secure.join(trigger["round_id"])
        return [] if keys is None else [Output(HPO_KEYS, "RoundKeys", keys, f"{self.host_id}@{trigger['round_id']}")]

    def on_round_keys(self, keys: RoundKeys) -> str | None:
        return self.secure.on_round_keys(keys)

    def start_next(self, window: LocalWindow, config: dict) -> None:
        """Run the next waiting round on a snapshot of the local window (its events up to the
        trigger's data time) in a worker process of lower priority: the optimisation is CPU-bound
        and, in a thread, would hold the serving loop's GIL for seconds (request latency rose to
        ~0.7 s during a round)."""
        if not self.waiting or self.running is not None:
            return
        executor = self.warm()
        trigger = self.waiting.pop(0)
        events = window.as_of(trigger["as_of"])
        self.running = (trigger, executor.submit(run_round, self.agent, trigger, config, events))

    def warm(self) -> ProcessPoolExecutor:
        """Start the worker process now (it imports the model libraries), not at the first drift."""
        if self.executor is None:
            self.executor = ProcessPoolExecutor(
                1, mp_context=get_context("spawn"), initializer=_lower_priority, initargs=(os.getpid(),)
            )
            self.executor.submit(os.getpid)  # workers start on the first task
        return self.executor

    def finished(self, now: float | None = None) -> list[tuple[dict, RoundOutcome]]:
        """The rounds that have finished and can be masked, or have waited ``key_wait_s`` for their
        peers' round keys (a peer reads the trigger, and sends its keys, only between its batches);
        the agent comes back with what it spent."""
        now = time.monotonic() if now is None else now
        self.collect(now)
        out, waiting = [], []
        for trigger, outcome, deadline in self.done:
            if deadline <= now or self._maskable(trigger["round_id"], outcome):
                out.append((trigger, outcome))
            else:
                waiting.append((trigger, outcome, deadline))
        self.done = waiting
        return out

    def collect(self, now: float | None = None) -> bool:
        """Take the worker's finished round, if any: True when one came (its ε is now in this
        agent's ledger, which must reach disk before anything can reload an older one)."""
        if self.running is None or not self.running[1].done():
            return False
        trigger, future = self.running
        self.running = None
        outcome, self.agent = future.result()
        self.done.append((trigger, outcome, (time.monotonic() if now is None else now) + self.key_wait_s))
        return True

    def _maskable(self, round_id: str, outcome: RoundOutcome) -> bool:
        """Whether the round's shared values can leave now: masked, or nothing to mask."""
        if not self.secure.enabled or not any(tr.shared for tr in outcome.trials):
            return True
        return self.secure.enough_peers(len(self.secure.masking_peers(round_id)))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def metrics(self, trigger: dict, outcome: RoundOutcome) -> list[Output]:
        """The round's TrialMetric records: the configurations every replica scored masked, the
        others in the clear (ε-DP). Shared values that cannot be masked (too few peers' keys)
        are not sent at all, unless the group is too small for secure aggregation."""
        round_id = trigger["round_id"]
        log.info("host %s round %s: %s, %d metric(s)", self.host_id, round_id, outcome.status, len(outcome.trials))
        shared = {tr.config_id: tr.noised_quality * tr.slice_size for tr in outcome.trials if tr.shared}
        masked = self.secure.mask(round_id, shared) if shared and self.secure.enabled else None
        if shared and self.secure.enabled and masked is None:
            log.warning("host %s round %s: too few peers' round keys to mask; its shared metrics are withheld",
                        self.host_id, round_id)
        out = []
        for tr in outcome.trials:
            if tr.shared and self.secure.enabled and masked is None:
                continue
            value: TrialMetric = {
                "round_id": round_id,
                "model": self.model,
                "agent": self.host_id,
                "config_id": tr.config_id,
                "config_json": json_config.dumps(tr.config),
                "noised_quality": tr.noised_quality,
                "noised_latency_ms": tr.noised_latency_ms,
                "slice_size": tr.slice_size,
                "epsilon_spent": tr.epsilon_spent,
                "masked_value": None,
                "masked_with": [],
                "mask_key": b"",
                "noise_std": tr.noise_std,
                "signature": b"",
            }
            if masked is not None and tr.config_id in masked[0]:
                value["noised_quality"] = math.nan  # only the masked value leaves
                value["masked_value"], value["masked_with"], value["mask_key"] = masked[0][tr.config_id], *masked[1:]
            out.append(Output(HPO_METRICS, "TrialMetric", self.secure.sign_metric(value), self.model))
        return out

    def unmask(self, request: UnmaskRequest) -> list[Output]:
        """The answer to an unmask request; the round's first request is journaled (fsynced)
        before any answer leaves, so a restart from an older checkpoint still refuses a second one."""
        before = self.secure.answered()
        answer = self.secure.unmask(request)
        now = self.secure.answered()
        if self.answers_path is not None and now != before:
            write_private(self.answers_path, json.dumps({r: list(a) for r, a in now.items()}).encode())
        return [] if answer is None else [Output(HPO_METRICS, "UnmaskShare", answer, self.model)]

    def memory(self) -> dict:
        return self.secure.memory()

    def restore(self, memory: dict | None) -> None:
        """Back to a checkpoint's round memory, with the journal's first requests on top."""
        self.secure.restore(memory)
        if self.answers_path is None or not self.answers_path.is_file():
            return
        try:
            self.secure.remember_answered(json.loads(self.answers_path.read_bytes()))
        except (ValueError, TypeError, AttributeError, OSError) as exc:  # fail closed
            log.error("host %s: unmask journal %s unreadable (%s): it answers no request of the rounds it "
                      "restored", self.host_id, self.answers_path, exc)
            self.secure.refuse_unanswered()

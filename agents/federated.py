"""A host's side of federated HPO: run its FHPO agent's rounds beside serving, mask the metrics
for secure aggregation, and answer the aggregator's unmask requests for dropped peers.

It produces records (``Output``) and leaves sending them, inside a transaction, to the host.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from fedrift import json_config
from fedrift.core.aggregation import AgentKeys, PairwiseMasker
from fedrift.core.fhpo import FhpoAgent, RoundOutcome
from fedrift.core.records import Output
from fedrift.pipeline import die_with_parent
from fedrift.topics import HPO_METRICS
from schemas.records import TrialMetric, UnmaskShare

log = logging.getLogger(__name__)
ROUND_MEMORY = 100  # HPO rounds whose mask peers are kept for a later unmask request


def _lower_priority(host_pid: int) -> None:
    """Runs in the worker: yield the CPU to serving, and die with the host (even a SIGKILLed one,
    even one killed while this worker was starting)."""
    os.nice(10)
    die_with_parent(host_pid)


def run_round(agent: FhpoAgent, round_id: str, config: dict, events: list) -> tuple[RoundOutcome, FhpoAgent]:
    """One FHPO round (in the worker process); the agent is returned with its updated ledger."""
    return agent.run_round(round_id, config, events), agent


class FederatedRounds:
    def __init__(self, agent: FhpoAgent, model: str, host_id: str, keys: AgentKeys, context: bytes, peers: set[str]):
        self.agent, self.model, self.host_id, self.keys, self.context = agent, model, host_id, keys, context
        self.peers = peers
        self.peer_keys: dict[str, bytes] = {}  # the other replicas' public keys, pinned at first sight
        self.conflicted: set[str] = set()  # peers that published another key since: masked with by nobody
        self.round_peers: OrderedDict[str, list[str]] = OrderedDict()  # round -> peers its masks used
        self.revealed: dict[tuple[str, str], set[str]] = {}  # (round, config) -> peers unmasked for so far
        self.waiting: list[dict] = []
        self.running: tuple[dict, Future] | None = None
        self.executor: ProcessPoolExecutor | None = None

    def learn_key(self, value: dict) -> bool:
        """Pin a peer's public key the first time it is seen (trust on first use); returns False
        for a different key later published under a pinned name. Whoever can write ``hpo.keys``
        could otherwise put their own key in a peer's place and unmask this host's shares; the
        peer is then left out of masking until an operator resolves it (a legitimate new key
        after a lost key file looks the same), so the two sides' ``masked_with`` lists disagree
        and the aggregator drops those configurations instead of summing mismatched masks."""
        host = value.get("host")
        if value.get("model") != self.model or host not in self.peers:
            return True
        pinned = self.peer_keys.get(host)
        if pinned is not None and pinned != value["public_key"]:
            if host not in self.conflicted:
                log.warning("host %s: %s published another public key; refused, no longer masking with it",
                            self.host_id, host)
            self.conflicted.add(host)
            return False
        self.peer_keys[host] = value["public_key"]
        return True

    def masker(self, peers: list[str] | None = None) -> PairwiseMasker:
        """Pairwise mask secrets with the peers whose keys are known (or with ``peers`` only)."""
        public = {h: k for h, k in self.peer_keys.items()
                  if (peers is None or h in peers) and h not in self.conflicted}
        return PairwiseMasker(self.host_id, self.keys.pair_secrets(self.host_id, public, self.context))

    def start_next(self, events: list, config: dict) -> None:
        """Run the next waiting round on a snapshot of the local window in a worker process of
        lower priority: the optimisation is CPU-bound and, in a thread, would hold the serving
        loop's GIL for seconds (request latency rose to ~0.7 s during a round)."""
        if not self.waiting or self.running is not None:
            return
        executor = self.warm()
        trigger = self.waiting.pop(0)
        self.running = (trigger, executor.submit(run_round, self.agent, trigger["round_id"], config, events))

    def warm(self) -> ProcessPoolExecutor:
        """Start the worker process now (it imports the model libraries), not at the first drift."""
        if self.executor is None:
            self.executor = ProcessPoolExecutor(
                1, mp_context=get_context("spawn"), initializer=_lower_priority, initargs=(os.getpid(),)
            )
            self.executor.submit(os.getpid)  # workers start on the first task
        return self.executor

    def finished(self) -> list[tuple[dict, RoundOutcome]]:
        """The round that has finished, if any; the agent comes back with what it spent."""
        if self.running is None or not self.running[1].done():
            return []
        trigger, future = self.running
        self.running = None
        outcome, self.agent = future.result()
        return [(trigger, outcome)]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def metrics(self, trigger: dict, outcome: RoundOutcome) -> list[Output]:
        """The round's TrialMetric records: masked where every replica scored the configuration."""
        round_id = trigger["round_id"]
        log.info("host %s round %s: %s, %d metric(s)", self.host_id, round_id, outcome.status, len(outcome.trials))
        masker = self.masker()
        self.round_peers[round_id] = masker.peers
        if len(self.round_peers) > ROUND_MEMORY:
            forgotten, _ = self.round_peers.popitem(last=False)
            self.revealed = {k: v for k, v in self.revealed.items() if k[0] != forgotten}
        if not masker.peers:
            log.warning("host %s round %s: no peer keys yet, metrics go in the clear (ε-DP)", self.host_id, round_id)
        out = []
        for tr in outcome.trials:
            weighted = tr.noised_quality * tr.slice_size
            masked = tr.shared and bool(masker.peers)
            value: TrialMetric = {
                "round_id": round_id,
                "model": self.model,
                "agent": self.host_id,
                "config_id": tr.config_id,
                "config_json": json_config.dumps(tr.config),
                "noised_quality": math.nan if masked else tr.noised_quality,  # masked: only the masked share
                "noised_latency_ms": tr.noised_latency_ms,
                "slice_size": tr.slice_size,
                "epsilon_spent": tr.epsilon_spent,
                "masked_shares": [masker.mask(round_id, tr.config_id, weighted)] if masked else [],
                "masked_with": masker.peers if masked else [],
                "noise_std": tr.noise_std,
            }
            out.append(Output(HPO_METRICS, "TrialMetric", value, self.model))
        return out

    def memory(self) -> dict:
        """What must survive a restart: the pinned peer keys, and which peers each round masked
        with and was unmasked for."""
        return {"round_peers": dict(self.round_peers), "revealed": {k: set(v) for k, v in self.revealed.items()},
                "peer_keys": dict(self.peer_keys), "conflicted": set(self.conflicted)}

    def restore(self, memory: dict | None) -> None:
        if memory:
            self.round_peers = OrderedDict(memory["round_peers"])
            self.revealed = {k: set(v) for k, v in memory["revealed"].items()}
            self.peer_keys = dict(memory.get("peer_keys", {}))
            self.conflicted = set(memory.get("conflicted", ()))

    def unmask(self, request: dict) -> list[Output]:
        """Secure-aggregation dropout recovery: reveal only the masks shared with the dropped, and
        never so many, over all requests for the same share, that this host's own value would be
        exposed (two requests naming one peer each would otherwise add up to all of them). A
        round this host never masked in is refused (its peers are unknown)."""
        round_id = request["round_id"]
        if round_id not in self.round_peers:
            log.warning("host %s refuses to unmask %s: it published no masked metric there", self.host_id, round_id)
            return []
        masker = self.masker(self.round_peers[round_id])
        out = []
        for cid, dropped in request["dropped"].items():
            if self.host_id in dropped:
                continue
            revealed = self.revealed.setdefault((round_id, cid), set())
            survivors = 1 + len(set(masker.peers) - set(dropped) - revealed)
            if survivors < self.agent.config.min_survivors:
                log.warning("host %s refuses to unmask %s/%s: %d survivor(s), fewer than %d", self.host_id,
                            round_id, cid, survivors, self.agent.config.min_survivors)
                continue
            answer = masker.recovery_share(dropped, round_id, cid, revealed)
            if answer is None:
                log.warning("host %s refuses to unmask %s/%s: with what it revealed before, every peer it "
                            "masked with would be named dropped", self.host_id, round_id, cid)
                continue
            share, covered = answer
            revealed.update(covered)
            value: UnmaskShare = {
                "round_id": request["round_id"],
                "model": self.model,
                "agent": self.host_id,
                "config_id": cid,
                "dropped": covered,
                "share": share,
            }
            out.append(Output(HPO_METRICS, "UnmaskShare", value, self.model))
        return out

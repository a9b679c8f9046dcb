"""The aggregator stage: ``hpo.metrics`` in (TrialMetric, UnmaskShare), ``hpo.aggregates`` and
``UnmaskRequest`` out.

It collects each (model, round)'s metrics. When every replica has sent every metric, or at a
timeout, a round with masked metrics names its survivors and dropped hosts (``UnmaskRequest``,
once per round) and closes as soon as each survivor has answered with its shares, or one more
timeout later with what it has; a round without masked metrics closes at once. Time is passed in
(``now``, seconds), so the simulator and the Faust shell drive it alike.

Every metric and answer must come from a replica of its model (``<model>-<r>``, r below the
replica count), signed by that replica's key, pinned at first sight from ``hpo.keys``
(``on_key``), and a metric must belong to a round ``hpo.triggers`` announced (``on_trigger``): any
host principal may write ``hpo.metrics``, and a forged metric or answer in a peer's name, or a
round no trigger started, would otherwise spoil or steer a round's result.

>>> from fedrift.core.masking import SecureAggregation
>>> from fedrift.core.secagg import Identity
>>> host = SecureAggregation("m", "m-0", Identity.generate(), set(), replicas=1, threshold=3)
>>> book = RoundBook(replicas=1, expected_per_agent=1, timeout_s=60, threshold=3)
>>> book.on_key(host.key_record(0)) is None
True
>>> book.on_trigger({"round_id": "r1"})
>>> metric = {"model": "m", "round_id": "r1", "agent": "m-0", "config_id": "c", "config_json": "{}",
...           "noised_quality": 0.8, "slice_size": 200, "masked_value": None, "masked_with": [],
...           "mask_key": b"", "noised_latency_ms": 0.1, "epsilon_spent": 0.5, "noise_std": 0.01,
...           "signature": b""}
>>> book.on_metric(metric, now=0.0)
Traceback (most recent call last):
...
schemas.codec.InvalidRecord: a TrialMetric in the name of m-0 not signed by its pinned key
>>> [o.record for o in book.on_metric(host.sign_metric(metric), now=0.0)]
['AggregateResult']
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from fedrift import json_config
from fedrift.core.aggregation import AggregateOutcome, Aggregator, Contribution
from fedrift.core.records import Output
from fedrift.core.secagg import MODULUS, usable_mask_key
from fedrift.core.signatures import PinnedKeys, metric_message, share_message
from fedrift.topics import HPO_AGGREGATES, HPO_TRIGGERS
from schemas import InvalidRecord
from schemas.records import AgentKey, AggregateResult, HpoTrigger, TrialMetric, UnmaskRequest, UnmaskShare

log = logging.getLogger(__name__)
TRIGGER_MEMORY = 10_000  # round ids of the latest triggers a metric may belong to
# bounds no honest metric comes near (a slice is part of a host's window; noise of ε ≥ 1e-6 per
# record on it), so sums and variances stay finite
MAX_SLICE, MAX_ABS_QUALITY, MAX_NOISE_STD = 2**31, 1e6, 1e6


def validate_share(s: UnmaskShare) -> None:
    """Raise ``InvalidRecord`` for shares no reconstruction can use."""
    shares = [*s["seed_shares"].values(), *s["key_shares"].values()]
    if any(len(v) != n for v, n in [*((v, 16) for v in s["seed_shares"].values()),
                                   *((v, 32) for v in s["key_shares"].values())]) or not shares:
        raise InvalidRecord("seed shares are 16 bytes, key shares 32, and there is at least one")
    if set(s["seed_shares"]) & set(s["key_shares"]):
        raise InvalidRecord("a host's seed share and key share in one answer")


def validate_metric(m: TrialMetric) -> None:
    """Raise ``InvalidRecord`` for a metric no aggregate may include."""
    if not 0 < m["slice_size"] <= MAX_SLICE:
        raise InvalidRecord(f"slice_size {m['slice_size']} is not positive and at most 2^31")
    masked = m["masked_value"]
    if masked is not None and not (0 <= masked < MODULUS and len(m["mask_key"]) == 32):
        raise InvalidRecord("a masked value lies in [0, 2^62) and comes with a 32-byte mask key")
    if masked is not None and not usable_mask_key(m["mask_key"]):
        raise InvalidRecord("the mask key is not a usable X25519 public key")
    if masked is None and not (math.isfinite(m["noised_quality"]) and abs(m["noised_quality"]) <= MAX_ABS_QUALITY):
        raise InvalidRecord("a metric in the clear needs a finite noised_quality of at most 1e6")
    std = m["noise_std"]
    if not math.isfinite(std) or (std < 0 and std != -1.0) or std > MAX_NOISE_STD:
        raise InvalidRecord(f"noise_std {std} is invalid (-1, or in [0, 1e6])")
    json_config.loads(m["config_json"])


@dataclass
class OpenRound:
    aggregator: Aggregator
    started: float
    counts: dict[str, int] = field(default_factory=dict)  # agent -> metrics received
    unmask_asked: float | None = None  # when the survivors were asked for their shares


class RoundBook:
    def __init__(self, replicas: int, expected_per_agent: int, timeout_s: float, threshold: int,
                 roster: dict[str, tuple[bytes, bytes]] | None = None) -> None:
        self.replicas = replicas
        self.threshold = threshold
        self.expected = expected_per_agent
        self.timeout_s = timeout_s
        self.open: dict[tuple[str, str], OpenRound] = {}
        self.closed: set[tuple[str, str]] = set()
        self.keys = PinnedKeys(roster)
        self.triggered: OrderedDict[str, None] = OrderedDict()

    def replica_names(self, model: str) -> list[str]:
        return [f"{model}-{r}" for r in range(self.replicas)]

    def on_key(self, key: AgentKey) -> str | None:
        """Pin a replica's keys (``hpo.keys``); the reason a key is refused, or None."""
        if key["host"] not in self.replica_names(key["model"]):
            return f"{key['host']} is not one of model {key['model']}'s {self.replicas} replicas"
        return self.keys.learn(key)

    def on_trigger(self, trigger: HpoTrigger | dict) -> None:
        """A round ``hpo.triggers`` started: its metrics are expected."""
        self.triggered[trigger["round_id"]] = None
        while len(self.triggered) > TRIGGER_MEMORY:
            self.triggered.popitem(last=False)

    def authenticate(self, record: str, value: TrialMetric | UnmaskShare) -> None:
        """Raise ``InvalidRecord`` unless a replica of the record's model signed it with its
        pinned key (and a metric belongs to a triggered round)."""
        agent = value["agent"]
        if agent not in self.replica_names(value["model"]):
            raise InvalidRecord(f"{agent} is not one of model {value['model']}'s {self.replicas} replicas")
        message = metric_message(value) if record == "TrialMetric" else share_message(value)  # type: ignore[arg-type]
        if not self.keys.signed_by(agent, value["signature"], message):
            raise InvalidRecord(f"a {record} in the name of {agent} not signed by its pinned key")
        if record == "TrialMetric" and value["round_id"] not in self.triggered:
            raise InvalidRecord(f"round {value['round_id']} was not started by a trigger")

    def on_metric(self, metric: TrialMetric, now: float, now_ms: int = 0) -> list[Output]:
        """Add a TrialMetric (raises ``InvalidRecord`` for an unusable one); the aggregate once
        the round is complete."""
        validate_metric(metric)
        self.authenticate("TrialMetric", metric)
        key = (metric["model"], metric["round_id"])
        if key in self.closed:
            return []
        if key not in self.open:
            group = [f"{metric['model']}-{r}" for r in range(self.replicas)]
            self.open[key] = OpenRound(Aggregator(metric["model"], metric["round_id"], group, self.threshold), now)
        rnd = self.open[key]
        contribution = Contribution(
            metric["agent"],
            metric["config_id"],
            json_config.loads(metric["config_json"]),
            metric["noised_quality"] * metric["slice_size"] if metric["masked_value"] is None else 0.0,
            metric["slice_size"],
            metric["noise_std"] if metric["noise_std"] >= 0 else 0.0,
            masked=metric["masked_value"],
            masked_with=tuple(metric["masked_with"]),
            mask_key=metric["mask_key"],
        )
        if not rnd.aggregator.add(contribution):
            return []
        rnd.counts[metric["agent"]] = rnd.counts.get(metric["agent"], 0) + 1
        complete = len(rnd.counts) >= self.replicas and all(c >= self.expected for c in rnd.counts.values())
        return self._unmask_or_close(key, now, now_ms) if complete and rnd.unmask_asked is None else []

    def on_share(self, share: UnmaskShare) -> list[Output]:
        """A survivor's shares; the aggregate once every survivor answered."""
        key = (share["model"], share["round_id"])
        rnd = self.open.get(key)
        if rnd is None or rnd.unmask_asked is None:
            return []
        validate_share(share)
        self.authenticate("UnmaskShare", share)
        rnd.aggregator.add_unmask(share["agent"], share["share_index"], share["seed_shares"], share["key_shares"])
        return self.close(key) if rnd.aggregator.unmask_complete() else []

    def _unmask_or_close(self, key: tuple[str, str], now: float, now_ms: int) -> list[Output]:
        """Name the survivors and the dropped once; a round without masked metrics (or with too
        few survivors to rebuild any mask) closes at once."""
        rnd = self.open[key]
        rnd.unmask_asked = now
        survivors, dropped = rnd.aggregator.declare()
        if len(survivors) < self.threshold:
            if survivors:
                log.warning("round %s/%s: %d survivor(s), fewer than %d: its masked metrics are dropped",
                            *key, len(survivors), self.threshold)
            return self.close(key)
        request: UnmaskRequest = {"round_id": key[1], "model": key[0], "time": now_ms, "survivors": survivors,
                                  "dropped_agents": dropped}
        log.info("round %s/%s: unmasking with survivors %s, dropped %s", *key, survivors, dropped)
        return [Output(HPO_TRIGGERS, "UnmaskRequest", request, key[0])]

    def tick(self, now: float, now_ms: int) -> list[Output]:
        """Rounds past their deadline: name the survivors first, then close."""
        out = []
        for key, rnd in list(self.open.items()):
            if rnd.unmask_asked is None and now - rnd.started > self.timeout_s:
                out += self._unmask_or_close(key, now, now_ms)
            elif rnd.unmask_asked is not None and now - rnd.unmask_asked > self.timeout_s:
                out += self.close(key)
        return out

    def close(self, key: tuple[str, str]) -> list[Output]:
        rnd = self.open.pop(key)
        self.closed.add(key)
        result = rnd.aggregator.result()
        if result.best is None:
            log.warning("round %s/%s: no usable metric (dropped: %s)", *key, result.dropped)
            return []
        log.info("round %s/%s: best %s %.3f±%.3f", *key, result.best.config_id, result.best.score, result.best.std)
        return [Output(HPO_AGGREGATES, "AggregateResult", aggregate_record(result), result.model)]


def aggregate_record(result: AggregateOutcome) -> AggregateResult:
    if result.best is None:
        raise ValueError(f"round {result.round_id}/{result.model} has no best configuration")
    return {
        "round_id": result.round_id,
        "model": result.model,
        "best_config_id": result.best.config_id,
        "best_config_json": json_config.dumps(result.best.config),
        "score": result.best.score,
        "score_std": result.best.std,
        "agents": sorted({a for s in result.leaderboard for a in s.agents}),
        "leaderboard": [
            {"config_id": s.config_id, "score": s.score, "score_std": s.std, "agents": len(s.agents)}
            for s in result.leaderboard
        ],
    }

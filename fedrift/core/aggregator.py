"""The aggregator stage: ``hpo.metrics`` in (TrialMetric, UnmaskShare), ``hpo.aggregates`` and
``UnmaskRequest`` out.

It collects each (model, round)'s metrics and publishes the best configuration when every
replica has sent every metric, or at a timeout: a round whose masked configurations miss agents
first asks the survivors to unmask (``UnmaskRequest``), then closes as soon as each survivor has
answered, or one more timeout later with what it has. Time is passed in (``now``, seconds), so
the simulator and the Faust shell drive it alike.

>>> book = RoundBook(replicas=1, expected_per_agent=1, timeout_s=60)
>>> metric = {"model": "m", "round_id": "r1", "agent": "m-0", "config_id": "c", "config_json": "{}",
...           "noised_quality": 0.8, "slice_size": 200, "masked_shares": [], "masked_with": [],
...           "noised_latency_ms": 0.1, "epsilon_spent": 0.5, "noise_std": 0.01}
>>> [o.record for o in book.on_metric(metric, now=0.0)]
['AggregateResult']
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from fedrift import json_config
from fedrift.core.aggregation import AggregateOutcome, Aggregator, Contribution
from fedrift.core.records import Output
from fedrift.topics import HPO_AGGREGATES, HPO_TRIGGERS
from schemas import InvalidRecord
from schemas.records import AggregateResult, TrialMetric, UnmaskRequest, UnmaskShare

log = logging.getLogger(__name__)


def validate_share(s: UnmaskShare) -> None:
    """Raise ``InvalidRecord`` for a recovery share that would poison the unmasked sum."""
    if not math.isfinite(s["share"]):
        raise InvalidRecord("share is not finite")


def validate_metric(m: TrialMetric) -> None:
    """Raise ``InvalidRecord`` for a metric no aggregate may include."""
    if m["slice_size"] <= 0:
        raise InvalidRecord(f"slice_size {m['slice_size']} is not positive")
    if not all(math.isfinite(v) for v in m["masked_shares"]) or len(m["masked_shares"]) > 1:
        raise InvalidRecord("masked_shares must be one finite value or none")
    if not m["masked_shares"] and not math.isfinite(m["noised_quality"]):
        raise InvalidRecord("a metric in the clear needs a finite noised_quality")
    if not math.isfinite(m["noise_std"]) or (m["noise_std"] < 0 and m["noise_std"] != -1.0):
        raise InvalidRecord(f"noise_std {m['noise_std']} is invalid")
    json_config.loads(m["config_json"])


@dataclass
class OpenRound:
    aggregator: Aggregator
    started: float
    counts: dict[str, int] = field(default_factory=dict)  # agent -> metrics received
    unmask_asked: float | None = None  # when the survivors were asked for recovery shares


class RoundBook:
    def __init__(self, replicas: int, expected_per_agent: int, timeout_s: float) -> None:
        self.replicas = replicas
        self.expected = expected_per_agent
        self.timeout_s = timeout_s
        self.open: dict[tuple[str, str], OpenRound] = {}
        self.closed: set[tuple[str, str]] = set()

    def on_metric(self, metric: TrialMetric, now: float) -> list[Output]:
        """Add a TrialMetric (raises ``InvalidRecord`` for an unusable one); the aggregate once
        the round is complete."""
        validate_metric(metric)
        key = (metric["model"], metric["round_id"])
        if key in self.closed:
            return []
        if key not in self.open:
            group = [f"{metric['model']}-{r}" for r in range(self.replicas)]
            self.open[key] = OpenRound(Aggregator(metric["model"], metric["round_id"], group), now)
        rnd = self.open[key]
        shares = metric["masked_shares"]
        contribution = Contribution(
            metric["agent"],
            metric["config_id"],
            json_config.loads(metric["config_json"]),
            shares[0] if shares else metric["noised_quality"] * metric["slice_size"],
            metric["slice_size"],
            metric["noise_std"] if metric["noise_std"] >= 0 else 0.0,
            masked=bool(shares),
            masked_with=tuple(metric["masked_with"]),
        )
        if not rnd.aggregator.add(contribution):
            return []
        rnd.counts[metric["agent"]] = rnd.counts.get(metric["agent"], 0) + 1
        complete = len(rnd.counts) >= self.replicas and all(c >= self.expected for c in rnd.counts.values())
        return self.close(key) if complete else []

    def on_share(self, share: UnmaskShare) -> list[Output]:
        """A survivor's recovery share; the aggregate once every survivor answered."""
        key = (share["model"], share["round_id"])
        rnd = self.open.get(key)
        if rnd is None or rnd.unmask_asked is None:
            return []
        validate_share(share)
        rnd.aggregator.add_recovery(share["agent"], share["config_id"], share["dropped"], share["share"])
        return self.close(key) if rnd.aggregator.recovery_complete() else []

    def tick(self, now: float, now_ms: int) -> list[Output]:
        """Rounds past their deadline: ask for recovery shares first, then close."""
        out = []
        for key, rnd in list(self.open.items()):
            if rnd.unmask_asked is None and now - rnd.started > self.timeout_s:
                dropped = rnd.aggregator.declare_dropped()
                rnd.unmask_asked = now
                if dropped:
                    request: UnmaskRequest = {"round_id": key[1], "model": key[0], "time": now_ms, "dropped": dropped}
                    log.info("round %s/%s: asking the survivors to unmask without %s", *key, dropped)
                    out.append(Output(HPO_TRIGGERS, "UnmaskRequest", request, key[0]))
                    continue
            if rnd.unmask_asked is not None and (
                now - rnd.unmask_asked > self.timeout_s or not rnd.aggregator.declared_dropped
            ):
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

"""The routing-controller stage: model statuses, current inputs, drift signals, HPO aggregates and
deployments in; routing weights (as markers into every request partition, and on
``routing.weights``), SHADOW_START and PRUNE / RESTORE deployments out.

It keeps each host's latest ``ModelStatus`` and differences the cumulative scored/correct counters
into the Fixed Share evidence (``RoutingController``). As soon as every model has new evidence it
re-weights the models by historical evidence × alignment with the current inputs × drift
compensation (event-driven, so the weights follow the labels at any request rate and land at the
same stream position in the pipeline and the simulator); ``tick`` re-weights on the clock when
no evidence came for ``idle_s``. Constructed
from what the compacted topics hold (the restored state is passed in, nothing is read here).

>>> c = Controller(ControllerConfig(pool=("a", "b"), partitions=2))
>>> for host, model, correct in (("a-0", "a", 90), ("b-0", "b", 60)):
...     s = {"host": host, "model": model, "window_quality": correct / 100, "input_sketch": []}
...     out = c.on_status({**s, "n_seen": 0, "n_correct": 0}, now_ms=0)
...     out = c.on_status({**s, "n_seen": 100, "n_correct": correct}, now_ms=0)
>>> [(o.topic, o.partition) for o in out]
[('inference.requests', 0), ('inference.requests', 1), ('routing.weights', None)]
>>> c.last_published["a"] > 0.99
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from fedrift import json_config
from fedrift.core.lifecycle import Action, new_deployment
from fedrift.core.models import FAMILIES, config_id
from fedrift.core.records import Output
from fedrift.core.routing import InputSketch, RoutingConfig, RoutingController, drift_compensation
from fedrift.topics import DEPLOYMENTS, REQUESTS, ROUTING_WEIGHTS, deployment_key
from schemas import InvalidRecord
from schemas.records import AggregateResult, Deployment, DriftSignal, ModelStatus, RoutingWeights


@dataclass(frozen=True)
class ControllerTuning:
    """The controller's memory and publishing cadence (settable as ``FEDRIFT_CONTROLLER_<FIELD>``)."""

    input_half_life: float = 250.0  # events: the current-input sketch's memory
    publish_change: float = 1e-3  # a weight must move this much for a new version
    idle_s: float = 2.0  # re-weight on the clock when no evidence arrived for this long


@dataclass(frozen=True)
class ControllerConfig:
    pool: tuple[str, ...]
    partitions: int = 3  # request partitions: one weights marker each
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    tuning: ControllerTuning = field(default_factory=ControllerTuning)


def validate_status(s: ModelStatus) -> None:
    """Raise ``InvalidRecord`` for a status no controller may fold in."""
    if not 0.0 <= s["window_quality"] <= 1.0:
        raise InvalidRecord(f"window_quality {s['window_quality']} is outside [0, 1]")
    if s["n_seen"] < 0 or not 0 <= s["n_correct"] <= max(s["n_seen"], 0):
        raise InvalidRecord(f"counters n_seen={s['n_seen']} n_correct={s['n_correct']} are impossible")
    if not all(math.isfinite(v) for v in s.get("input_sketch", [])):
        raise InvalidRecord("input_sketch has a non-finite value")


def validate_aggregate(a: AggregateResult) -> None:
    """Raise ``InvalidRecord`` for an aggregate no shadow may be started from."""
    scores = [a["score"], a["score_std"], *(e["score"] for e in a["leaderboard"])]
    if not all(math.isfinite(v) for v in scores):
        raise InvalidRecord("an aggregate score is not finite")
    json_config.loads(a["best_config_json"])


class Controller:
    def __init__(
        self,
        config: ControllerConfig,
        weights: RoutingWeights | None = None,
        deployments: Iterable[Deployment] = (),
        statuses: Iterable[ModelStatus] = (),
    ) -> None:
        self.cfg = config
        self.controller = RoutingController(config.routing)
        self.status: dict[str, ModelStatus] = {}  # host -> latest ModelStatus
        self.batch: dict[str, list[int]] = {}  # model -> [correct, scored] since the last observe
        self.current = InputSketch(half_life=config.tuning.input_half_life)
        self.production = {m: config_id(FAMILIES[m].defaults) for m in config.pool if m in FAMILIES}
        self.shadows: set[str] = set()
        self.before_drift: dict[str, float] | None = None
        self.last_accuracy: dict[str, float] = {}
        self.last_published: dict[str, float] = {}
        self.pruned: dict[str, str] = {}
        self.updated_ms = 0  # when the weights were last recomputed
        if weights:
            self.controller.version = weights["version"]
            self.last_published = dict(weights["weights"])
            self.controller.evidence.restore({m: weights["historical"].get(m, 0.0) for m in config.pool})
        for d in deployments:
            self.on_deployment(d)
        for s in statuses:
            self.status[s["host"]] = s

    # -- records in ---------------------------------------------------------------------------
    def on_status(self, s: ModelStatus, now_ms: int) -> list[Output]:
        """Keep the host's latest report and add what it scored since its previous one to the
        evidence; re-weight as soon as every model has new evidence."""
        validate_status(s)
        prev = self.status.get(s["host"])
        self.status[s["host"]] = s
        if prev is None or s["n_seen"] < prev["n_seen"] or s["n_correct"] < prev["n_correct"]:
            return []  # first report, or counters restarted: a new baseline
        batch = self.batch.setdefault(s["model"], [0, 0])
        batch[0] += s["n_correct"] - prev["n_correct"]
        batch[1] += s["n_seen"] - prev["n_seen"]
        if all(self.batch.get(m, [0, 0])[1] > 0 for m in self.cfg.pool):
            return self._reweight(now_ms)
        return []

    def on_request(self, features: list[float]) -> None:
        self.current.add(features)

    def on_drift(self, signal: DriftSignal) -> None:
        if signal["drifted"] and self.last_accuracy:
            self.before_drift = dict(self.last_accuracy)

    def on_deployment(self, d: Deployment) -> None:
        action, model = Action.of(d), d["model"]
        if model not in self.cfg.pool:
            return  # not a model of this pool: nothing to route
        if action is Action.SHADOW_START:
            self.shadows.add(model)
        elif action is Action.PROMOTE:
            self.production[model] = d["config_id"]
            self.shadows.discard(model)
        elif action is Action.REJECT:
            self.shadows.discard(model)
        elif action is Action.PRUNE:
            self.pruned[model] = self.controller.pruned[model] = d["reason"]
        else:
            self.pruned.pop(model, None)
            self.controller.pruned.pop(model, None)

    def on_aggregate(self, a: AggregateResult, now_ms: int) -> list[Output]:
        """A SHADOW_START when a round's best configuration beats production's score."""
        model = a["model"]
        if model in self.shadows or model not in self.production:
            return []
        prod = next((e for e in a["leaderboard"] if e["config_id"] == self.production[model]), None)
        if a["best_config_id"] == self.production[model] or (prod and prod["score"] >= a["score"]):
            return []
        self.shadows.add(model)
        # the hosts read deployments: the round's scores stay on hpo.aggregates, out of their reach,
        # so no group of hosts can subtract its own values from the sum (``docs/privacy.md``)
        value = new_deployment(
            model, Action.SHADOW_START, a["best_config_id"], now_ms,
            f"HPO {a['round_id']}: its best configuration outscored production's", {},
            config_json=a["best_config_json"], round_id=a["round_id"],
        )
        return [deployment(value)]

    # -- the periodic decision ----------------------------------------------------------------
    def accuracy(self) -> dict[str, float] | None:
        per_model: dict[str, list[tuple[float, int]]] = {}
        for s in self.status.values():
            if s["model"] in self.cfg.pool:
                per_model.setdefault(s["model"], []).append((s["window_quality"], max(s["n_seen"], 1)))
        if set(per_model) != set(self.cfg.pool):
            return None  # wait until every model has reported once
        return {m: sum(q * n for q, n in v) / sum(n for _, n in v) for m, v in per_model.items()}

    def alignment(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for s in self.status.values():
            if s["model"] in self.cfg.pool:
                out.setdefault(s["model"], []).append(InputSketch.from_list(s["input_sketch"]).similarity(self.current))
        return {m: sum(v) / len(v) for m, v in out.items()}

    def _observe_batch(self) -> None:
        """Feed the evidence once every model has been scored on new events. Replicas report on
        their own schedules, so each model's batch covers about the same events; the smallest
        batch size counts as the number of events (the conservative step)."""
        models = list(self.cfg.pool)
        if any(self.batch.get(m, [0, 0])[1] == 0 for m in models):
            return
        n = min(self.batch[m][1] for m in models)
        self.controller.observe({m: self.batch[m][0] / self.batch[m][1] for m in models}, n)
        self.batch.clear()

    def tick(self, now_ms: int) -> list[Output]:
        """Re-weight if nothing did for ``idle_s`` (alignment moves with the inputs even while no
        labels arrive)."""
        if now_ms - self.updated_ms < self.cfg.tuning.idle_s * 1000:
            return []
        return self._reweight(now_ms)

    def _reweight(self, now_ms: int) -> list[Output]:
        """PRUNE / RESTORE deployments, and new weights if they moved."""
        acc = self.accuracy()
        if acc is None:
            return []
        self.updated_ms = now_ms
        self.last_accuracy = acc
        self._observe_batch()
        decision = self.controller.update(acc, self.alignment(), drift_compensation(acc, self.before_drift))
        out = []
        for model in sorted(set(decision.pruned) ^ set(self.pruned)):
            pruned = model in decision.pruned
            value = new_deployment(
                model, Action.PRUNE if pruned else Action.RESTORE, self.production[model], now_ms,
                decision.pruned.get(model, "quality recovered"), {"accuracy": acc[model], "best": max(acc.values())},
            )
            out.append(deployment(value))
        self.pruned = dict(decision.pruned)
        if not any(abs(w - self.last_published.get(m, -1.0)) > self.cfg.tuning.publish_change
                   for m, w in decision.weights.items()):
            self.controller.version -= 1  # nothing published: keep versions dense
            return out
        self.last_published = dict(decision.weights)
        record: RoutingWeights = {
            "version": decision.version,
            "time": now_ms,
            "weights": decision.weights,
            "historical": decision.historical,
            "alignment": decision.alignment,
            "drift_compensation": decision.drift_compensation,
            "pruned": [{"model": m, "reason": r} for m, r in decision.pruned.items()],
        }
        # markers first: the hosts route by them; routing.weights is for clients and restarts
        out += [Output(REQUESTS, "RoutingWeights", record, "weights", p) for p in range(self.cfg.partitions)]
        return [*out, Output(ROUTING_WEIGHTS, "RoutingWeights", record, "weights")]


def deployment(value: Deployment) -> Output:
    """A Deployment under its lifecycle's compaction key (``topics.deployment_key``)."""
    return Output(DEPLOYMENTS, "Deployment", value, deployment_key(value))

"""The routing controller: the seed formula, exactly,

    new = historical × (1 + alignment/Σalignment + drift_comp/Σdrift_comp), normalised,

with zero sums guarded, a small exploration floor, and pruning of models that stay weak.

``historical`` is not accuracy itself. Measured on our streams, weights proportional to accuracy
spread traffic almost uniformly (models within a few points of each other get near-equal
shares) and lose to the best single model; so historical accuracy is turned into weights by a
softmax with temperature ``temperature`` (in accuracy units): ``historical ∝ exp((acc − max acc)/T)``.
With T = 0.01, a model one point behind the leader gets e⁻¹ ≈ 0.37 of its weight, five points
behind ≈ 0.007, so traffic concentrates on what works while near-ties still share.

>>> ctl = RoutingController(RoutingConfig(floor=0.0))
>>> d = ctl.update({"a": 0.90, "b": 0.85}, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0})
>>> round(d.weights["a"], 3), round(d.weights["b"], 3)
(0.993, 0.007)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RoutingConfig:
    temperature: float = 0.01  # softmax temperature of the historical transform, in accuracy units
    floor: float = 0.002  # exploration floor per live model
    prune_margin: float = 0.10  # a model this far below the best ...
    prune_patience: int = 10  # ... for this many consecutive updates is pruned
    restore_margin: float = 0.05  # a pruned model back within this margin is restored


@dataclass
class RoutingDecision:
    version: int
    weights: dict[str, float]
    historical: dict[str, float]
    alignment: dict[str, float]
    drift_compensation: dict[str, float]
    pruned: dict[str, str] = field(default_factory=dict)


def historical_weights(accuracy: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Softmax of accuracy at ``temperature`` (normalised to sum to 1)."""
    best = max(accuracy.values())
    raw = {m: math.exp((a - best) / temperature) for m, a in accuracy.items()}
    total = sum(raw.values())
    return {m: v / total for m, v in raw.items()}


def seed_formula(
    historical: Mapping[str, float], alignment: Mapping[str, float], drift_comp: Mapping[str, float]
) -> dict[str, float]:
    """``historical × (1 + a/Σa + d/Σd)``, normalised; a zero sum makes its term zero."""
    sa, sd = sum(alignment.values()), sum(drift_comp.values())
    raw = {
        m: h * (1.0 + (alignment[m] / sa if sa > 0 else 0.0) + (drift_comp[m] / sd if sd > 0 else 0.0))
        for m, h in historical.items()
    }
    total = sum(raw.values())
    if total <= 0:
        return {m: 1.0 / len(raw) for m in raw}
    return {m: v / total for m, v in raw.items()}


class RoutingController:
    """Turns per-model accuracy, alignment and drift compensation into routing weights."""

    def __init__(self, config: RoutingConfig | None = None) -> None:
        self.config = config or RoutingConfig()
        self.version = 0
        self.pruned: dict[str, str] = {}
        self._weak_streak: dict[str, int] = {}

    def update(
        self, accuracy: Mapping[str, float], alignment: Mapping[str, float], drift_comp: Mapping[str, float]
    ) -> RoutingDecision:
        cfg = self.config
        self._prune(accuracy)
        live = [m for m in accuracy if m not in self.pruned] or list(accuracy)
        hist = historical_weights({m: accuracy[m] for m in live}, cfg.temperature)
        combined = seed_formula(
            hist,
            {m: max(alignment.get(m, 0.0), 0.0) for m in live},
            {m: max(drift_comp.get(m, 0.0), 0.0) for m in live},
        )
        floor = min(cfg.floor, 1.0 / len(live))
        weights = {m: floor + (1.0 - floor * len(live)) * combined[m] for m in live}
        weights.update({m: 0.0 for m in accuracy if m not in weights})
        self.version += 1
        return RoutingDecision(self.version, weights, hist, dict(alignment), dict(drift_comp), dict(self.pruned))

    def _prune(self, accuracy: Mapping[str, float]) -> None:
        cfg = self.config
        best = max(accuracy.values())
        for m, a in accuracy.items():
            if m in self.pruned:
                if a >= best - cfg.restore_margin:
                    del self.pruned[m]
                    self._weak_streak[m] = 0
                continue
            self._weak_streak[m] = self._weak_streak.get(m, 0) + 1 if a < best - cfg.prune_margin else 0
            if self._weak_streak[m] >= cfg.prune_patience and len(accuracy) - len(self.pruned) > 1:
                self.pruned[m] = (
                    f"accuracy {a:.3f} below best {best:.3f} - {cfg.prune_margin:.2f} "
                    f"for {cfg.prune_patience} consecutive updates"
                )


class InputSketch:
    """A decayed per-feature histogram of the inputs a model trained on, over fixed quantile bins.

    ``similarity`` (mean Bhattacharyya coefficient over features) compares two sketches; it is the
    controller's *alignment* between a model's training inputs and the current inputs.
    """

    def __init__(self, edges: list[np.ndarray], half_life: float) -> None:
        self.edges = edges
        self.decay = 0.5 ** (1.0 / half_life)
        self.counts = [np.zeros(len(e) + 1) for e in edges]

    @classmethod
    def from_sample(cls, sample: np.ndarray, bins: int = 8, half_life: float = 1000.0) -> InputSketch:
        qs = np.linspace(0, 1, bins + 1)[1:-1]
        return cls([np.unique(np.quantile(sample[:, j], qs)) for j in range(sample.shape[1])], half_life)

    def like(self, half_life: float) -> InputSketch:
        return InputSketch(self.edges, half_life)

    def add(self, x: list[float]) -> None:
        for j, v in enumerate(x):
            c = self.counts[j]
            c *= self.decay
            c[int(np.searchsorted(self.edges[j], v, side="right"))] += 1.0

    def similarity(self, other: InputSketch) -> float:
        total = 0.0
        for a, b in zip(self.counts, other.counts, strict=True):
            sa, sb = a.sum(), b.sum()
            if sa <= 0 or sb <= 0:
                return 0.0
            total += float(np.sum(np.sqrt(a / sa * b / sb)))
        return total / len(self.counts)

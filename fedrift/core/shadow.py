"""Shadow evaluation: a paired, anytime-valid comparison of a shadow configuration with production
on the same labelled requests.

Only requests where exactly one of the two is right carry information (McNemar). Among those, let
``p`` be the chance that the shadow is the one that is right. The evaluator keeps two mixture
likelihood ratios against ``p = 1/2``: one with a uniform prior on ``p > 1/2`` (shadow better) and
one on ``p < 1/2`` (shadow worse). Under "not better" the first is a non-negative supermartingale,
so by Ville's inequality it ever exceeds ``1/alpha`` with probability at most ``alpha``: the test
stays valid however often it is peeked at. Promote when it does (after ``min_samples`` pairs);
reject when the harm ratio exceeds ``1/alpha_harm``, or at ``max_samples`` (timeout).

>>> ev = ShadowEvaluator(alpha=0.05, min_samples=50)
>>> decision = None
>>> for i in range(400):
...     decision = decision or ev.update(production_correct=(i % 3 == 0), shadow_correct=(i % 3 != 2))
>>> decision.action, decision.evidence["wins"] > decision.evidence["losses"]
('promote', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import betainc, betaln


@dataclass
class ShadowDecision:
    action: str  # "promote" | "reject"
    reason: str
    evidence: dict[str, float]


def log_mixture_lr(wins: int, losses: int) -> float:
    """log ∫_{1/2}^{1} p^w (1-p)^l · 2 dp / (1/2)^(w+l): evidence that the shadow wins more often."""
    tail = betainc(losses + 1, wins + 1, 0.5)  # = P(p > 1/2) under Beta(wins+1, losses+1)
    if tail <= 0:
        return -math.inf
    return math.log(2.0) + betaln(wins + 1, losses + 1) + math.log(tail) + (wins + losses) * math.log(2.0)


class ShadowEvaluator:
    def __init__(
        self, alpha: float = 0.05, alpha_harm: float = 0.05, min_samples: int = 200, max_samples: int = 10_000
    ) -> None:
        self.alpha, self.alpha_harm = alpha, alpha_harm
        self.min_samples, self.max_samples = min_samples, max_samples
        self.n = self.wins = self.losses = 0
        self.production_correct = self.shadow_correct = 0

    def update(self, production_correct: bool, shadow_correct: bool) -> ShadowDecision | None:
        self.n += 1
        self.production_correct += bool(production_correct)
        self.shadow_correct += bool(shadow_correct)
        if shadow_correct and not production_correct:
            self.wins += 1
        elif production_correct and not shadow_correct:
            self.losses += 1
        if self.n < self.min_samples:
            return None
        better, worse = self._log_lrs()
        if better >= math.log(1.0 / self.alpha):
            return ShadowDecision(
                "promote",
                f"shadow better: log-LR {better:.2f} ≥ log(1/α) {math.log(1 / self.alpha):.2f}",
                self.evidence,
            )
        if worse >= math.log(1.0 / self.alpha_harm):
            return ShadowDecision(
                "reject", f"shadow worse: log-LR {worse:.2f} ≥ {math.log(1 / self.alpha_harm):.2f}", self.evidence
            )
        if self.n >= self.max_samples:
            return ShadowDecision("reject", f"no decision after {self.n} paired requests (timeout)", self.evidence)
        return None

    def _log_lrs(self) -> tuple[float, float]:
        """Both log-LRs; recomputed only when a discordant pair arrived (concordant pairs change nothing)."""
        key = (self.wins, self.losses)
        if getattr(self, "_cache_key", None) != key:
            self._cache_key = key
            self._cache = (log_mixture_lr(self.wins, self.losses), log_mixture_lr(self.losses, self.wins))
        return self._cache

    @property
    def evidence(self) -> dict[str, float]:
        return {
            "n": float(self.n),
            "wins": float(self.wins),
            "losses": float(self.losses),
            "production_accuracy": self.production_correct / max(self.n, 1),
            "shadow_accuracy": self.shadow_correct / max(self.n, 1),
            "log_lr_better": log_mixture_lr(self.wins, self.losses),
            "log_lr_worse": log_mixture_lr(self.losses, self.wins),
        }

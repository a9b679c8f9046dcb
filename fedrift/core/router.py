"""The patent's deficit rule: send each request to the model whose routed count lags most behind
its weight's share, so traffic matches the weights exactly, not just on average.

>>> r = DeficitRouter({"a": 0.5, "b": 0.25, "c": 0.25})
>>> [r.choose() for _ in range(8)]
['a', 'b', 'c', 'a', 'a', 'b', 'c', 'a']
>>> r.counts
{'a': 4, 'b': 2, 'c': 2}
"""

from __future__ import annotations

from collections.abc import Mapping


class DeficitRouter:
    """Deterministic weighted routing. New weights restart the counts, so the new share is met
    exactly from the moment it applies (deficits from the old weights are not carried over)."""

    def __init__(self, weights: Mapping[str, float], version: int = 0) -> None:
        self.set_weights(weights, version)

    def set_weights(self, weights: Mapping[str, float], version: int | None = None) -> None:
        total = sum(w for w in weights.values() if w > 0)
        if not weights or total <= 0:
            raise ValueError("routing needs at least one model with a positive weight")
        self.weights = {m: max(w, 0.0) / total for m, w in weights.items()}
        self.counts = {m: 0 for m in self.weights}
        self.routed = 0
        if version is not None:
            self.version = version

    def resume(self, counts: Mapping[str, int]) -> None:
        """Continue after a restart from what was already routed under the current weights, so the
        deficits pick up where they were instead of starting over.

        >>> a, b = DeficitRouter({"x": 0.7, "y": 0.3}), DeficitRouter({"x": 0.7, "y": 0.3})
        >>> _ = [a.choose() for _ in range(5)]
        >>> b.resume(a.counts)
        >>> [a.choose() for _ in range(6)] == [b.choose() for _ in range(6)]
        True
        """
        self.counts = {m: int(counts.get(m, 0)) for m in self.weights}
        self.routed = sum(self.counts.values())

    def choose(self) -> str:
        """Route one request.

        Among models whose deficit ``w*n - count`` is at least ``delta = 1/(2K-2)``, take the one
        whose next request falls due first (Tijdeman's chairman-assignment rule). Plain
        "largest deficit" can drift past one request (e.g. 1.04 for weights 8,8,8,.5,.5); this
        refinement keeps every model within ``1 - delta`` of its exact share at all times.
        """
        self.routed += 1
        n = self.routed
        k = len(self.weights)
        delta = 1.0 / (2 * k - 2) if k > 1 else 0.0
        eligible = [m for m, w in self.weights.items() if w > 0 and w * n - self.counts[m] >= delta - 1e-12]
        best = min(eligible, key=lambda m: (self.counts[m] + 1 - delta) / self.weights[m])
        self.counts[best] += 1
        return best

"""Quality metrics. Classification accuracy first; the metric is pluggable through ``Metric``.

>>> m = PrequentialScore()
>>> for y_pred, y in [(1, 1), (0, 0), (1, 1), (0, 1)]:
...     m.update(y_pred, y)
>>> m.accuracy, round(m.kappa_temporal, 3)
(0.75, 0.667)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import stats


class Metric(Protocol):
    """A per-event quality in [0, 1] (higher is better); its bound sets the DP sensitivity."""

    lower: float
    upper: float

    def __call__(self, y_pred, y_true) -> float: ...


class Accuracy:
    lower, upper = 0.0, 1.0

    def __call__(self, y_pred, y_true) -> float:
        return 1.0 if y_pred == y_true else 0.0


class PrequentialScore:
    """Running accuracy and Cohen's kappa-temporal (against the no-change classifier, which
    predicts the previous label: on Elec2 it scores ~85 %, so accuracy alone flatters)."""

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0
        self.nochange_correct = 0
        self._last_label = None

    def update(self, y_pred, y_true) -> None:
        self.n += 1
        self.correct += y_pred == y_true
        self.nochange_correct += self._last_label == y_true
        self._last_label = y_true

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def kappa_temporal(self) -> float:
        if not self.n:
            return 0.0
        p_nochange = self.nochange_correct / self.n
        return (self.accuracy - p_nochange) / (1.0 - p_nochange) if p_nochange < 1.0 else 0.0


class WindowedMean:
    """Mean of the last ``size`` values (O(1) per update)."""

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0

    def update(self, v: float) -> None:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(v)
        self.total += v

    @property
    def mean(self) -> float:
        return self.total / len(self.values) if self.values else 0.0

    def keep_last(self, n: int) -> None:
        """Forget all but the last ``n`` values (e.g. what came before a drift)."""
        while len(self.values) > n:
            self.total -= self.values.popleft()

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class PairedGap:
    """``mean`` = accuracy of system a minus system b on the same events, with a confidence interval."""

    mean: float
    low: float
    high: float
    batches: int


def paired_gap(
    a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray, batch: int = 500, confidence: float = 0.95
) -> PairedGap:
    """Difference in accuracy between two systems scored on the same events, by batch means.

    Errors on a drifting stream come in runs, so the per-event differences are not independent and
    their naive standard error is too small. The differences are averaged over consecutive batches
    of ``batch`` events (the last partial batch is dropped from the interval, not from ``mean``) and
    the interval is Student's t over those batch means.

    >>> a = [True] * 900 + [False] * 100
    >>> g = paired_gap(a, a[::-1], batch=100)
    >>> round(g.mean, 3), g.low < 0 < g.high, g.batches
    (0.0, True, 10)
    """
    if len(a) != len(b):
        raise ValueError("paired_gap needs two per-event sequences of the same length")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    k = len(d) // batch
    mean = float(d.mean()) if len(d) else 0.0
    if k < 2:
        return PairedGap(mean, -np.inf, np.inf, k)
    means = d[: k * batch].reshape(k, batch).mean(axis=1)
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1) * means.std(ddof=1) / np.sqrt(k))
    return PairedGap(mean, mean - half, mean + half, k)

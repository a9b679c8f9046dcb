"""The reference zoo: what a user would deploy in one line instead of fedrift.

Every River classifier family with its library defaults (standardised inputs where the family
expects them: linear learners and nearest neighbours), scored prequentially (test, then train, on
every event) by River's own ``evaluate.progressive_val_score``. The zoo's best on a stream is the
bar fedrift's quality tables compare with (``benchmarks/zoo.py``, ``fedrift simulate --zoo``).

>>> result = prequential("logistic", [([float(i % 2), float(i % 7)], i % 2) for i in range(200)])
>>> round(result.accuracy, 2), result.n
(0.98, 200)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from river import (
    ensemble,
    evaluate,
    forest,
    linear_model,
    metrics,
    multiclass,
    naive_bayes,
    neighbors,
    preprocessing,
    tree,
)
from river.base import Classifier, Estimator


def _scaled(model: Estimator) -> Estimator:
    return preprocessing.StandardScaler() | model


def _one_vs_rest(binary: Classifier) -> Estimator:
    """Binary linear learners handle any number of classes one-vs-rest (two classes: the same)."""
    return _scaled(multiclass.OneVsRestClassifier(binary))


# name -> a fresh model with the library's defaults (seeded where the family is random)
ZOO: dict[str, Callable[[], Estimator]] = {
    "logistic": lambda: _one_vs_rest(linear_model.LogisticRegression()),
    "softmax": lambda: _scaled(linear_model.SoftmaxRegression()),
    "perceptron": lambda: _one_vs_rest(linear_model.Perceptron()),
    "passive_aggressive": lambda: _one_vs_rest(linear_model.PAClassifier()),
    "alma": lambda: _one_vs_rest(linear_model.ALMAClassifier()),
    "gaussian_nb": lambda: naive_bayes.GaussianNB(),
    "hoeffding_tree": lambda: tree.HoeffdingTreeClassifier(),
    "hoeffding_adaptive_tree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=0),
    "extremely_fast_tree": lambda: tree.ExtremelyFastDecisionTreeClassifier(),
    "knn": lambda: _scaled(neighbors.KNNClassifier()),
    "adaptive_random_forest": lambda: forest.ARFClassifier(seed=0),
    "aggregated_mondrian_forest": lambda: forest.AMFClassifier(seed=0),
    "leveraging_bagging": lambda: ensemble.LeveragingBaggingClassifier(tree.HoeffdingTreeClassifier(), seed=0),
    "streaming_random_patches": lambda: ensemble.SRPClassifier(seed=0),
}


@dataclass(frozen=True)
class ZooResult:
    name: str
    accuracy: float
    n: int
    events_per_s: float


def prequential(name: str, rows: Iterable[tuple[list[float], int]]) -> ZooResult:
    """Test-then-train ``ZOO[name]`` over ``rows``; accuracy and events/s on one core."""
    data: list[tuple[dict[Hashable, Any], Any]] = [(dict(enumerate(x)), y) for x, y in rows]
    t0 = time.perf_counter()
    accuracy = evaluate.progressive_val_score(data, ZOO[name](), metrics.Accuracy())
    elapsed = time.perf_counter() - t0
    return ZooResult(name, accuracy.get(), len(data), len(data) / elapsed if elapsed > 0 else float("inf"))

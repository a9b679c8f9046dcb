"""The learners behind fedrift's one small model interface: River classifiers adapted to
list-of-floats features, and the few learners River lacks in the shape fedrift needs
(windowed-forgetting naive Bayes, scikit-learn's mini-batch SGD, a query-safe kNN graph).

>>> model = ForgettingGaussianNB(window=2)
>>> for x, y in [([0.0], 0), ([1.0], 1), ([0.1], 0)]:
...     model.learn_one(x, y)
>>> model.predict_one([0.05])
0
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from river import naive_bayes, neighbors


class Classifier(Protocol):
    """What fedrift needs of a model: predict, probabilities, learn one labelled event."""

    def predict_one(self, x: list[float]) -> int | None: ...

    def predict_proba_one(self, x: list[float]) -> dict[int, float]: ...

    def learn_one(self, x: list[float], y: int) -> None: ...


class RiverClassifier:
    """Adapts a River classifier (dict features) to fedrift's list-of-floats interface."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator

    @staticmethod
    def _x(x: list[float]) -> dict[int, float]:
        return dict(enumerate(x))

    def predict_one(self, x):
        return self.estimator.predict_one(self._x(x))

    def predict_proba_one(self, x):
        return self.estimator.predict_proba_one(self._x(x))

    def learn_one(self, x, y):
        self.estimator.learn_one(self._x(x), y)


class ForgettingGaussianNB:
    """Gaussian naive Bayes that forgets: two models learn in parallel; every ``window`` events the
    older one is dropped, so predictions use between ``window`` and ``2*window`` recent events."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._old: RiverClassifier | None = None
        self._new = RiverClassifier(naive_bayes.GaussianNB())
        self._seen = 0

    def _active(self) -> RiverClassifier:
        return self._old or self._new

    def predict_one(self, x):
        return self._active().predict_one(x)

    def predict_proba_one(self, x):
        return self._active().predict_proba_one(x)

    def learn_one(self, x, y):
        if self._old is not None:
            self._old.learn_one(x, y)
        self._new.learn_one(x, y)
        self._seen += 1
        if self._seen % self.window == 0:
            self._old, self._new = self._new, RiverClassifier(naive_bayes.GaussianNB())


class MiniBatchSGD:
    """Logistic regression trained by scikit-learn's SGD on mini-batches: the throughput learner.

    Events are buffered and learnt ``batch_size`` at a time (``partial_fit``), with a running
    standardisation. scikit-learn needs the class set up front, so an unseen class restarts it.
    """

    def __init__(self, alpha: float = 1e-4, eta0: float = 0.05, batch_size: int = 32, seed: int = 0) -> None:
        self._params = {"alpha": alpha, "eta0": eta0, "random_state": seed}  # picklable (host checkpoints)
        self.batch_size = batch_size
        self._clf = None
        self._classes: list[int] = []
        self._buf_x: list[list[float]] = []
        self._buf_y: list[int] = []
        self._n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def _make(self):
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="log_loss", learning_rate="constant", **self._params)

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self._mean is None or self._m2 is None or self._n < 2:
            return X
        std = np.sqrt(self._m2 / (self._n - 1))
        return (X - self._mean) / np.where(std > 0, std, 1.0)

    def _update_scaler(self, x: np.ndarray) -> None:
        if self._mean is None:
            self._mean, self._m2 = np.zeros_like(x), np.zeros_like(x)
        self._n += 1
        d = x - self._mean
        self._mean += d / self._n
        self._m2 += d * (x - self._mean)

    def predict_proba_one(self, x):
        if self._clf is None:
            return {c: 1.0 / len(self._classes) for c in self._classes} if self._classes else {}
        p = self._clf.predict_proba(self._scale(np.asarray([x], dtype=float)))[0]
        return {int(c): float(v) for c, v in zip(self._clf.classes_, p, strict=True)}

    def predict_one(self, x):
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get) if proba else None

    def learn_one(self, x, y):
        self._update_scaler(np.asarray(x, dtype=float))
        self._buf_x.append(x)
        self._buf_y.append(int(y))
        if y not in self._classes:
            self._classes = sorted({*self._classes, int(y)})
            self._clf = None
        if len(self._buf_y) >= self.batch_size:
            X = self._scale(np.asarray(self._buf_x, dtype=float))
            if len(self._classes) >= 2:
                if self._clf is None:
                    clf = self._make()
                    clf.partial_fit(X, self._buf_y, classes=self._classes)
                    self._clf = clf
                else:
                    self._clf.partial_fit(X, self._buf_y)
            self._buf_x, self._buf_y = [], []


class QuerySafeSWINN(neighbors.SWINN):
    """River's SWINN neighbour graph whose queries leave it unchanged: a query starts its walk at
    a random node, so it draws from the graph's generator and would shift every later insertion.
    Here the generator is put back after each query, so a model answers the same however often it
    was asked (a host's answers do not depend on its shadows or the simulator's sharing)."""

    def search(self, item, n_neighbors: int, epsilon: float = 0.1, **kwargs):
        state = self._rng.getstate()
        try:
            return super().search(item, n_neighbors, epsilon, **kwargs)
        finally:
            self._rng.setstate(state)

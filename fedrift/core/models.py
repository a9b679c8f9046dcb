"""The model pool: several online model families behind one small interface, each with a declared
scikit-optimize search space and a constructor from a configuration.

>>> fam = FAMILIES["hat"]
>>> model = fam.build(fam.defaults, seed=1)
>>> model.learn_one([0.1, 0.2], 1); model.predict_one([0.1, 0.2])
1
>>> config_id(fam.defaults) == config_id(dict(reversed(list(fam.defaults.items()))))
True
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from river import forest, linear_model, multiclass, neighbors, optim, preprocessing, tree
from skopt.space import Categorical, Dimension, Integer, Real

from fedrift.core.learners import (
    Classifier,
    ForgettingGaussianNB,
    MiniBatchSGD,
    QuerySafeSWINN,
    RiverClassifier,
)

__all__ = ["FAMILIES", "Classifier", "ModelFamily", "RiverClassifier", "clean_config", "config_id"]


def config_id(config: dict) -> str:
    """A stable short id for a configuration (same config, same id, whatever the key order)."""
    blob = json.dumps(config, sort_keys=True, default=_jsonable)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _jsonable(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    raise TypeError(type(v))


def clean_config(config: dict) -> dict:
    """Plain Python values (skopt hands out numpy scalars), so configs serialise to JSON."""
    return json.loads(json.dumps(config, default=_jsonable))


@dataclass(frozen=True)
class ModelFamily:
    """One model family: its hyperparameter search space, defaults, and constructor."""

    name: str
    space: list[Dimension]
    defaults: dict
    factory: Callable[..., Classifier]
    description: str = ""
    memory: Callable[[dict], float] = lambda config: 2000.0  # events the fitted model mostly reflects
    # (fitted model, its config, a new config) -> the model with the new config and what it learned
    retuner: Callable[[Classifier, dict, dict], Classifier | None] | None = None
    pure_predict: bool = True  # predicting leaves the model unchanged (the simulator may share it)
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", [d.name for d in self.space])

    def build(self, config: dict, seed: int = 0) -> Classifier:
        return self.factory(seed=seed, **{**self.defaults, **config})

    def retune(self, fitted: Classifier, config: dict, new_config: dict) -> Classifier | None:
        """A copy of ``fitted`` (built with ``config``) that keeps what it learned and runs with
        ``new_config``, where the library allows the change; otherwise None."""
        if self.retuner is None:
            return None
        fitted = fitted.resolve() if hasattr(fitted, "resolve") else fitted  # a simulator's shared model
        return self.retuner(fitted, {**self.defaults, **config}, {**self.defaults, **new_config})

    def to_point(self, config: dict) -> list:
        return [({**self.defaults, **config})[n] for n in self.names]

    def from_point(self, point: list) -> dict:
        return clean_config(dict(zip(self.names, point, strict=True)))


def _copied_one_vs_rest(fitted: Classifier):
    """A copy of a standardised one-vs-rest pipeline and its one-vs-rest step (whose ``classifier``
    is the template for classes seen later), or None for another kind of model."""
    if not isinstance(fitted, RiverClassifier):
        return None
    est = copy.deepcopy(fitted.estimator)
    return est, list(est.steps.values())[-1]


def _retune_linear(fitted: Classifier, old: dict, new: dict) -> Classifier | None:
    """New learning rate and L2 on every fitted one-vs-rest model (River's ``mutate``)."""
    del old
    if (copied := _copied_one_vs_rest(fitted)) is None:
        return None
    est, ovr = copied
    for clf in (ovr.classifier, *ovr.classifiers.values()):
        clf.mutate({"l2": new["l2"], "optimizer": optim.SGD(new["lr"])})
    return RiverClassifier(est)


def _retune_hat(fitted: Classifier, old: dict, new: dict) -> Classifier | None:
    """New grace period and split confidence on the grown tree; the leaf type cannot change."""
    if not isinstance(fitted, RiverClassifier) or new["leaf_prediction"] != old["leaf_prediction"]:
        return None
    est = copy.deepcopy(fitted.estimator)
    est.mutate({"grace_period": new["grace_period"], "delta": new["delta"]})
    return RiverClassifier(est)


def _retune_pa(fitted: Classifier, old: dict, new: dict) -> Classifier | None:
    """New C and mode on every fitted one-vs-rest learner. River's PA cannot ``mutate`` them (its
    step rule is bound at construction), so each learner is rebuilt with the new values and
    given the learned weights and intercept, its whole state."""
    del old
    if (copied := _copied_one_vs_rest(fitted)) is None:
        return None
    est, ovr = copied

    def rebuilt(clf: linear_model.PAClassifier) -> linear_model.PAClassifier:
        out = linear_model.PAClassifier(C=new["C"], mode=new["mode"], learn_intercept=clf.learn_intercept)
        out.weights, out.intercept = clf.weights, clf.intercept
        return out

    ovr.classifier = rebuilt(ovr.classifier)
    ovr.classifiers = {label: rebuilt(clf) for label, clf in ovr.classifiers.items()}
    return RiverClassifier(est)


def _retune_arf(fitted: Classifier, old: dict, new: dict) -> Classifier | None:
    """New Poisson rate and grace period on the grown forest, its trees and their background
    learners; the number of trees cannot change."""
    if not isinstance(fitted, RiverClassifier) or new["n_models"] != old["n_models"]:
        return None
    est = copy.deepcopy(fitted.estimator)
    est.mutate({"lambda_value": new["lambda_value"], "grace_period": new["grace_period"]})
    for t in (*est.data, *(b for b in getattr(est, "_background", None) or [] if b is not None)):
        t.mutate({"grace_period": new["grace_period"]})
    return RiverClassifier(est)


def _linear(lr: float, l2: float, seed: int) -> Classifier:
    del seed
    est = multiclass.OneVsRestClassifier(linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2))
    return RiverClassifier(preprocessing.StandardScaler() | est)


def _pa(C: float, mode: int, seed: int) -> Classifier:
    del seed
    est = multiclass.OneVsRestClassifier(linear_model.PAClassifier(C=C, mode=mode))
    return RiverClassifier(preprocessing.StandardScaler() | est)


def _hat(grace_period: int, delta: float, leaf_prediction: str, seed: int) -> Classifier:
    return RiverClassifier(
        tree.HoeffdingAdaptiveTreeClassifier(
            grace_period=grace_period, delta=delta, leaf_prediction=leaf_prediction, seed=seed
        )
    )


def _knn(n_neighbors: int, window_size: int, seed: int) -> Classifier:
    # River's default engine (an approximate neighbour graph over the last ``window_size`` events)
    engine = QuerySafeSWINN(maxlen=window_size, warm_up=min(500, window_size), seed=seed)
    return RiverClassifier(
        preprocessing.StandardScaler() | neighbors.KNNClassifier(n_neighbors=n_neighbors, engine=engine)
    )


def _arf(n_models: int, lambda_value: int, grace_period: int, seed: int) -> Classifier:
    return RiverClassifier(
        forest.ARFClassifier(n_models=n_models, lambda_value=lambda_value, grace_period=grace_period, seed=seed)
    )


def _gnb(window: int, seed: int) -> Classifier:
    del seed
    return ForgettingGaussianNB(window=window)


def _amf(n_estimators: int, step: float, dirichlet: float, seed: int) -> Classifier:
    return RiverClassifier(forest.AMFClassifier(n_estimators=n_estimators, step=step, dirichlet=dirichlet, seed=seed))


def _sgd(alpha: float, eta0: float, batch_size: int, seed: int) -> Classifier:
    return MiniBatchSGD(alpha=alpha, eta0=eta0, batch_size=batch_size, seed=seed)


# Defaults are the libraries' own defaults (or the plainest choice), never tuned to a data set.
FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily(
            "linear",
            [Real(1e-3, 0.5, prior="log-uniform", name="lr"), Real(1e-7, 1e-2, prior="log-uniform", name="l2")],
            {"lr": 0.01, "l2": 0.0},
            _linear,
            "standardised one-vs-rest logistic regression (River, SGD)",
            memory=lambda c: 10_000.0,
            retuner=_retune_linear,
        ),
        ModelFamily(
            "pa",
            [Real(1e-3, 10.0, prior="log-uniform", name="C"), Categorical([1, 2], name="mode")],
            {"C": 1.0, "mode": 1},
            _pa,
            "standardised passive-aggressive classifier (River): one aggressive update per mistake",
            memory=lambda c: 1000.0,
            retuner=_retune_pa,
        ),
        ModelFamily(
            "hat",
            [
                Integer(20, 400, name="grace_period"),
                Real(1e-9, 1e-3, prior="log-uniform", name="delta"),
                Categorical(["mc", "nb", "nba"], name="leaf_prediction"),
            ],
            {"grace_period": 200, "delta": 1e-7, "leaf_prediction": "nba"},
            _hat,
            "Hoeffding adaptive tree (River)",
            retuner=_retune_hat,
        ),
        ModelFamily(
            "gnb",
            [Integer(100, 5000, prior="log-uniform", name="window")],
            {"window": 1000},
            _gnb,
            "Gaussian naive Bayes with windowed forgetting (River)",
            memory=lambda c: 1.5 * c["window"],
        ),
        ModelFamily(
            "knn",
            [Integer(1, 15, name="n_neighbors"), Integer(100, 5000, prior="log-uniform", name="window_size")],
            {"n_neighbors": 5, "window_size": 1000},
            _knn,
            "standardised k-nearest neighbours over a sliding window (River, SWINN graph search)",
            memory=lambda c: float(c["window_size"]),
        ),
        ModelFamily(
            "arf",
            # the number of trees is a cost, not a regime: it stays the library's, so every
            # candidate the search finds can start from the production forest (``_retune_arf``)
            [Integer(1, 10, name="lambda_value"), Integer(20, 200, name="grace_period")],
            {"n_models": 10, "lambda_value": 6, "grace_period": 50},
            _arf,
            "adaptive random forest with ADWIN drift detection per tree (River)",
            retuner=_retune_arf,
        ),
        ModelFamily(
            "amf",
            [
                Integer(3, 20, name="n_estimators"),
                Real(0.1, 10.0, prior="log-uniform", name="step"),
                Real(0.01, 2.0, prior="log-uniform", name="dirichlet"),
            ],
            {"n_estimators": 10, "step": 1.0, "dirichlet": 0.5},
            _amf,
            "aggregated Mondrian forest (River): exact aggregation over subtrees, no split tests",
        ),
        ModelFamily(
            "sgd",
            [
                Real(1e-6, 1e-2, prior="log-uniform", name="alpha"),
                Real(1e-3, 0.5, prior="log-uniform", name="eta0"),
                Integer(8, 128, prior="log-uniform", name="batch_size"),
            ],
            {"alpha": 1e-4, "eta0": 0.05, "batch_size": 32},
            _sgd,
            "mini-batch logistic regression (scikit-learn SGD): the throughput learner",
            memory=lambda c: 10_000.0,
        ),
    )
}

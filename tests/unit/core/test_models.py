import copy

import numpy as np
import pytest
from skopt.space import Space

from fedrift.core.models import FAMILIES, config_id


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_learns_from_defaults_and_from_its_search_space(name):
    fam = FAMILIES[name]
    assert fam.space, "every family declares a search space"
    rng = np.random.default_rng(0)
    configs = [fam.defaults] + [fam.from_point(p) for p in Space(fam.space).rvs(2, random_state=1)]
    for cfg in configs:
        model = fam.build(cfg, seed=0)
        correct = 0
        for i in range(600):
            x = list(rng.normal(size=4))
            y = int(x[0] > 0)
            if i >= 300:
                correct += model.predict_one(x) == y
            model.learn_one(x, y)
        assert correct / 300 > 0.7, (name, cfg)
        proba = model.predict_proba_one([1.0, 0.0, 0.0, 0.0])
        assert set(proba) <= {0, 1} and abs(sum(proba.values()) - 1) < 1e-6


def test_multiclass_labels_work_for_every_family():
    rng = np.random.default_rng(1)
    for fam in FAMILIES.values():
        model = fam.build(fam.defaults)
        for _ in range(300):
            x = list(rng.normal(size=2))
            model.learn_one(x, int(rng.integers(0, 3)))
        assert model.predict_one([0.0, 0.0]) in {0, 1, 2}


def test_config_ids_are_stable_and_distinct():
    assert config_id({"a": 1, "b": 2.0}) == config_id({"b": 2.0, "a": 1})
    assert config_id({"a": 1}) != config_id({"a": 2})


def _stream(n: int, seed: int, classes: int = 2):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = list(rng.normal(size=4))
        yield x, int(x[0] + 0.5 * x[1] > 0) if classes == 2 else int(rng.integers(0, classes))


RETUNABLE = sorted(name for name, fam in FAMILIES.items() if fam.retuner is not None)


@pytest.mark.parametrize("name", RETUNABLE)
def test_a_model_retuned_to_its_own_configuration_is_the_model_it_was(name):
    """Retuning keeps the learned state: with unchanged hyperparameters the copy answers and
    learns exactly as the original does."""
    fam = FAMILIES[name]
    fitted = fam.build(fam.defaults, seed=0)
    for x, y in _stream(400, 0, classes=3):
        fitted.learn_one(x, y)
    retuned = fam.retune(fitted, fam.defaults, dict(fam.defaults))
    assert retuned is not None and retuned is not fitted
    for x, y in _stream(300, 1, classes=3):
        assert retuned.predict_proba_one(x) == fitted.predict_proba_one(x)
        fitted.learn_one(x, y)
        retuned.learn_one(x, y)


@pytest.mark.parametrize("name", RETUNABLE)
def test_a_retuned_model_starts_from_what_the_fitted_one_learned_and_leaves_it_alone(name):
    fam = FAMILIES[name]
    fitted = fam.build(fam.defaults, seed=0)
    for x, y in _stream(400, 0):
        fitted.learn_one(x, y)
    probe = [x for x, _ in _stream(50, 2)]
    twin = copy.deepcopy(fitted)  # production as it would be had nothing been retuned
    others = [fam.from_point(p) for p in Space(fam.space).rvs(20, random_state=3)]
    model = next(m for m in (fam.retune(fitted, fam.defaults, c) for c in others) if m is not None)
    assert [model.predict_one(x) for x in probe] == [twin.predict_one(x) for x in probe]  # nothing learned is lost
    for x, y in _stream(300, 4):  # shadow and production learn side by side: no state is shared
        model.learn_one(x, y)
        fitted.learn_one(x, y)
        twin.learn_one(x, y)
    assert [fitted.predict_proba_one(x) for x in probe] == [twin.predict_proba_one(x) for x in probe]


def _pa_learners(model) -> dict:
    ovr = list(model.estimator.steps.values())[-1]
    return {"template": ovr.classifier, **ovr.classifiers}


def test_a_retuned_pa_steps_by_its_new_mode_and_aggressiveness_on_every_learner():
    """River's PA picks its step rule from ``mode`` at construction: learners copied and given a
    new ``mode`` attribute would keep the old rule. Each retuned learner, the one-vs-rest template
    for classes seen later included, runs the new rule and C, bound to itself."""
    from river.linear_model.pa import BasePA

    fam = FAMILIES["pa"]
    fitted = fam.build({"C": 1.0, "mode": 1})
    for x, y in _stream(200, 0):
        fitted.learn_one(x, y)
    tiny = fam.retune(fitted, {"C": 1.0, "mode": 1}, {"C": 1e-6, "mode": 2})
    weights = lambda m: {k: dict(c.weights) for k, c in _pa_learners(m).items() if k != "template"}  # noqa: E731
    start = weights(tiny)
    assert start == weights(fitted)
    tiny.learn_one([0.3, -1.0, 2.0, 0.5], 2)  # a class first seen after the retune
    learners = _pa_learners(tiny)
    assert set(learners) == {"template", 0, 1, 2}
    for clf in learners.values():
        assert (clf.C, clf.mode) == (1e-6, 2)
        assert clf.calc_tau.__func__ is BasePA._calc_tau_2 and clf.calc_tau.__self__ is clf
    for x, y in _stream(50, 5):
        tiny.learn_one(x, y)
    moved = max(abs(w - start[k][f]) for k, ws in weights(tiny).items() if k in start for f, w in ws.items())
    assert moved < 1e-3  # C = 1e-6 keeps each step tiny


def test_an_arf_retuned_to_another_grace_period_applies_it_to_every_grown_tree():
    fam = FAMILIES["arf"]
    fitted = fam.build(fam.defaults, seed=0)
    for i, (x, y) in enumerate(_stream(3000, 0)):  # flips every 500: trees warn, grow background learners
        fitted.learn_one(x, y ^ (i // 500) % 2)
    retuned = fam.retune(fitted, fam.defaults, {**fam.defaults, "grace_period": 150, "lambda_value": 2})
    forest = retuned.estimator
    assert forest.lambda_value == 2 and forest.grace_period == 150
    assert {t.grace_period for t in forest.data} == {150}
    background = [t for t in forest._background if t is not None]
    assert background and {t.grace_period for t in background} == {150}
    assert fam.retune(fitted, fam.defaults, {**fam.defaults, "n_models": 4}) is None  # trees cannot be added

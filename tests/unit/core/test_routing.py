import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedrift.core.routing import RoutingConfig, RoutingController, historical_weights, seed_formula

models = ["a", "b", "c", "d"]
values = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4)


def pseudocode(historical, alignment, drift_comp):
    """The seed's pseudocode, written out independently of the implementation."""
    sum_a = sum(alignment.values())
    sum_d = sum(drift_comp.values())
    new = {}
    for m in historical:
        term_a = alignment[m] / sum_a if sum_a else 0.0
        term_d = drift_comp[m] / sum_d if sum_d else 0.0
        new[m] = historical[m] * (1 + term_a + term_d)
    total = sum(new.values())
    return {m: v / total for m, v in new.items()}


@settings(max_examples=300, deadline=None)
@given(acc=values, align=values, dc=values)
def test_weights_follow_the_seed_formula_and_are_a_distribution(acc, align, dc):
    acc_d, align_d, dc_d = (dict(zip(models, v, strict=True)) for v in (acc, align, dc))
    ctl = RoutingController(RoutingConfig(floor=0.0, prune_patience=10**9))
    d = ctl.update(acc_d, align_d, dc_d)
    assert all(w >= 0 for w in d.weights.values())
    assert math.isclose(sum(d.weights.values()), 1.0, rel_tol=1e-9)
    expected = pseudocode(historical_weights(acc_d, ctl.config.temperature), align_d, dc_d)
    for m in models:
        assert math.isclose(d.weights[m], expected[m], rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(acc=values, align=values, dc=values)
def test_floor_keeps_every_live_model_routable(acc, align, dc):
    acc_d, align_d, dc_d = (dict(zip(models, v, strict=True)) for v in (acc, align, dc))
    d = RoutingController(RoutingConfig(floor=0.01, prune_patience=10**9)).update(acc_d, align_d, dc_d)
    assert min(d.weights.values()) >= 0.01 - 1e-12
    assert math.isclose(sum(d.weights.values()), 1.0, rel_tol=1e-9)


def test_zero_sums_are_guarded():
    h = {"a": 0.5, "b": 0.5}
    assert seed_formula(h, {"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert seed_formula({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}) == {"a": 0.5, "b": 0.5}


def test_historical_transform_concentrates_on_the_leader():
    w = historical_weights({"a": 0.90, "b": 0.88, "c": 0.80}, 0.01)
    assert w["a"] > 0.85 and w["c"] < 1e-4
    # the patent's proportional weights would give a/c = 0.90/0.80: almost uniform
    assert 0.90 / 0.80 < 1.2


def test_consistently_weak_model_is_pruned_with_a_reason_and_restored():
    ctl = RoutingController(RoutingConfig(prune_patience=3))
    ones = {"a": 1.0, "b": 1.0}
    for _ in range(2):
        assert ctl.update({"a": 0.9, "b": 0.7}, ones, ones).pruned == {}
    d = ctl.update({"a": 0.9, "b": 0.7}, ones, ones)
    assert "b" in d.pruned and "below best" in d.pruned["b"] and d.weights["b"] == 0.0
    assert d.weights["a"] == pytest.approx(1.0)
    assert ctl.update({"a": 0.9, "b": 0.88}, ones, ones).pruned == {}


def test_the_last_live_model_is_never_pruned():
    ctl = RoutingController(RoutingConfig(prune_patience=1))
    d = ctl.update({"a": 0.9}, {"a": 1.0}, {"a": 1.0})
    assert d.weights == {"a": 1.0}

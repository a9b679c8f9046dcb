import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedrift.core.routing import FixedShare, RoutingConfig, RoutingController, seed_formula

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
    ctl.observe(acc_d, n=20)
    d = ctl.update(acc_d, align_d, dc_d)
    assert all(w >= 0 for w in d.weights.values())
    assert math.isclose(sum(d.weights.values()), 1.0, rel_tol=1e-9)
    expected = pseudocode(ctl.evidence.weights(models), align_d, dc_d)
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
    fs = FixedShare()
    for _ in range(10):  # 500 events at 90 / 88 / 80 %
        fs.observe({"a": 0.90, "b": 0.88, "c": 0.80}, n=50)
    w = fs.weights()
    assert w["a"] > 0.9 and w["c"] < 1e-3  # c keeps only its share of α
    # the patent's proportional weights would give a/c = 0.90/0.80: almost uniform
    assert 0.90 / 0.80 < 1.2


def test_fixed_share_lets_a_new_leader_take_over_after_a_drift():
    fs = FixedShare()
    for _ in range(200):  # 10,000 events where a leads by 5 points
        fs.observe({"a": 0.90, "b": 0.85}, n=50)
    assert fs.weights()["b"] < 0.01
    events = 0
    while fs.weights()["b"] < 0.5:  # then b leads by 10 points
        fs.observe({"a": 0.70, "b": 0.80}, n=50)
        events += 50
    assert events <= 1000  # tracks the switch, bounded by log(N/α) / (η · edge)
    plain = FixedShare(share=0.0)
    for _ in range(200):
        plain.observe({"a": 0.90, "b": 0.85}, n=50)
    for _ in range(events // 50):
        plain.observe({"a": 0.70, "b": 0.80}, n=50)
    assert plain.weights()["b"] < 0.5  # without sharing (plain Hedge) it would still trail


def test_fixed_share_batches_equal_single_events_for_the_hedge_step():
    one, batch = FixedShare(share=0.0), FixedShare(share=0.0)
    for a, b in [(1, 0), (1, 1), (0, 1), (1, 0)]:
        one.observe({"x": a, "y": b}, n=1)
    batch.observe({"x": 0.75, "y": 0.5}, n=4)
    assert one.weights() == pytest.approx(batch.weights())


def test_fixed_share_holds_unscored_models_and_restores():
    fs = FixedShare()
    fs.observe({"a": 0.9, "b": 0.5, "c": 0.7}, n=10)
    before = fs.weights()
    fs.observe({"a": 0.9, "b": 0.8}, n=10)  # c not scored this batch
    assert fs.weights()["c"] == pytest.approx(before["c"], rel=1e-3)
    other = FixedShare()
    other.restore(fs.weights())
    assert other.weights() == pytest.approx(fs.weights())


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


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.tuples(values, st.integers(1, 500)), min_size=1, max_size=30),
)
def test_fixed_share_weights_stay_a_distribution_with_every_model_recoverable(batches):
    fs = FixedShare()
    for acc, n in batches:
        fs.observe(dict(zip(models, acc, strict=True)), n)
    w = fs.weights()
    assert math.isclose(sum(w.values()), 1.0, rel_tol=1e-9)
    # the sharing step keeps every model at least α/N of the last batch's mix away from zero
    acc, n = batches[-1]
    assert min(w.values()) >= (1 - (1 - fs.share) ** n) / len(models) * (1 - 1e-9)


def test_input_sketch_ignores_unusable_inputs():
    from fedrift.core.routing import InputSketch

    sketch = InputSketch(half_life=10)
    for bad in ([], [float("nan"), 1.0]):
        sketch.add(bad)
    assert sketch.mean is None
    sketch.add([1.0, 2.0])
    sketch.add([1.0, float("inf")])
    sketch.add([5.0, 5.0, 5.0])
    assert sketch.mean.tolist() == [1.0, 2.0] and sketch.weight == 1.0

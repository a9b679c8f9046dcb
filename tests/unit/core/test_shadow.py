import numpy as np
import pytest

from fedrift.core.shadow import ShadowEvaluator, log_mixture_lr


def _run(rng, p_prod, p_shadow, corr=0.0, n=3000, **kw):
    ev = ShadowEvaluator(**kw)
    for _ in range(n):
        prod = rng.random() < p_prod
        shadow = prod if rng.random() < corr else rng.random() < p_shadow
        d = ev.update(prod, shadow)
        if d:
            return d
    return None


@pytest.mark.parametrize("corr", [0.0, 0.7])
def test_false_promotion_rate_on_a_a_streams_stays_below_alpha(corr):
    rng = np.random.default_rng(42)
    runs = 400
    promoted = sum(
        (d := _run(rng, acc, acc, corr, alpha=0.05, min_samples=100)) is not None and d.action == "promote"
        for acc in rng.uniform(0.55, 0.95, size=runs)
    )
    assert promoted / runs <= 0.05


def test_a_clearly_better_shadow_is_promoted_and_a_worse_one_rejected():
    rng = np.random.default_rng(1)
    better = _run(rng, 0.75, 0.85, min_samples=200)
    assert better.action == "promote" and better.evidence["n"] >= 200
    worse = _run(rng, 0.85, 0.75, min_samples=200)
    assert worse.action == "reject" and "worse" in worse.reason


def test_no_decision_before_min_samples_and_timeout_rejects():
    ev = ShadowEvaluator(min_samples=100, max_samples=300)
    for _ in range(99):
        assert ev.update(False, True) is None  # overwhelming evidence, but too early
    assert ev.update(False, True).action == "promote"
    ev = ShadowEvaluator(min_samples=10, max_samples=300)
    decisions = [ev.update(i % 2 == 0, i % 2 == 1) for i in range(300)]
    assert decisions[-1].action == "reject" and "timeout" in decisions[-1].reason


def test_mixture_lr_is_symmetric_and_neutral_without_evidence():
    assert log_mixture_lr(0, 0) == pytest.approx(0.0)
    assert log_mixture_lr(30, 10) > 0 > log_mixture_lr(10, 30)

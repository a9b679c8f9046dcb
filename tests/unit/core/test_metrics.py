import numpy as np
import pytest

from fedrift.core.metrics import paired_gap


def _bursty(rng: np.random.Generator, n: int, p_err: float, stay: float) -> np.ndarray:
    """Correctness with errors in runs: a two-state Markov chain whose mean error rate is p_err."""
    out = np.empty(n, dtype=bool)
    wrong = False
    leave_wrong = 1.0 - stay
    enter_wrong = leave_wrong * p_err / (1.0 - p_err)
    for i in range(n):
        wrong = rng.random() >= leave_wrong if wrong else rng.random() < enter_wrong
        out[i] = not wrong
    return out


def test_interval_covers_zero_at_its_level_on_a_a_streams_with_bursty_errors():
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for _ in range(trials):
        a, b = _bursty(rng, 10_000, 0.1, 0.9), _bursty(rng, 10_000, 0.1, 0.9)
        g = paired_gap(a, b)
        covered += g.low <= 0.0 <= g.high
    assert 0.90 <= covered / trials <= 0.99


def test_a_better_system_is_detected_and_the_mean_is_exact():
    rng = np.random.default_rng(1)
    a, b = rng.random(20_000) < 0.92, rng.random(20_000) < 0.90
    g = paired_gap(a, b)
    assert g.mean == pytest.approx(a.mean() - b.mean())
    assert 0.0 < g.low < g.mean < g.high
    assert g.batches == 40


def test_too_few_batches_give_an_unbounded_interval_and_mismatched_lengths_fail():
    g = paired_gap([True] * 600, [False] * 600)
    assert g.mean == 1.0 and g.batches == 1 and g.low == -np.inf and g.high == np.inf
    with pytest.raises(ValueError, match="same length"):
        paired_gap([True, False], [True])

"""Distributed noise: a masked quality carries 1/t of the Laplace noise, and the sum over t
survivors carries exactly the Laplace mechanism's (checked by its distribution, not its mean)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger

T, SCALE = 3, 1.0 / 0.4  # count units: sensitivity 1 hit, ε = 0.4


def _agent(shares: int) -> FhpoAgent:
    return FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(), noise_shares=shares)


def test_t_shares_from_the_secure_generator_sum_to_the_laplace_mechanism():
    agent = _agent(T)
    sums = np.array([sum(agent._laplace_share(SCALE, T) for _ in range(T)) for _ in range(20_000)])
    assert stats.kstest(sums, stats.laplace(scale=SCALE).cdf).pvalue > 1e-3
    one = np.array([agent._laplace_share(SCALE, T) for _ in range(20_000)])
    assert one.var() == pytest.approx(2 * SCALE**2 / T, rel=0.1)  # alone, a third of the variance
    assert stats.kstest(one, stats.laplace(scale=SCALE).cdf).pvalue < 1e-6  # so not the mechanism


def test_only_shared_metrics_carry_a_share_and_their_std_says_so():
    rng = np.random.default_rng(0)
    agent = _agent(T)
    for t in range(800):
        x = list(rng.normal(size=3))
        agent.observe(t, x, int(x[0] > 0))
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    full = np.sqrt(2) / 250 / 0.4
    for trial in out.trials:
        assert trial.noise_std == pytest.approx(full / np.sqrt(T) if trial.shared else full)
    assert {t.shared for t in out.trials} == {True, False}
    assert agent.ledger.max_loss == pytest.approx(5 * 0.5)  # the sum is ε-DP: the same spend

"""Distributed noise: a masked quality carries a (t − 1)-th of the Laplace noise, so the sum over
the t survivors unmasking needs keeps the Laplace mechanism's noise for the others even when one
host subtracts its own value from it (checked by distribution, not by mean)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger

T, SCALE = 3, 1.0 / 0.4  # count units: sensitivity 1 hit, ε = 0.4


def _shares_added(threshold: int = T) -> int:
    """Into how many shares a host of a group with this threshold splits its noise (the code's)."""
    from fedrift.core import secagg
    from fedrift.core.masking import SecureAggregation

    peers = {f"linear-{r}" for r in range(1, threshold)}
    return SecureAggregation("linear", "linear-0", secagg.Identity.generate(), peers, threshold, threshold).noise_shares


SHARES = _shares_added()


def _agent(shares: int, noise_seed: int | None = None) -> FhpoAgent:
    return FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(), noise_shares=shares,
                     noise_seed=noise_seed)


def _peers_view(shares: int, n: int = 20_000) -> np.ndarray:
    """The attack: a host that learns the unmasked sum of T survivors' values subtracts its own
    value and noise; what is left on its peers' values is the other T − 1 shares (the seeded
    sampler, the same draw as the secure one, so the test's verdict is fixed)."""
    agent = _agent(shares, noise_seed=0)
    return np.array([sum(agent._laplace_share(SCALE, shares) for _ in range(T - 1)) for _ in range(n)])


def test_the_sum_without_one_hosts_share_is_still_the_laplace_mechanism():
    assert stats.kstest(_peers_view(SHARES), stats.laplace(scale=SCALE).cdf).pvalue > 1e-3
    one = np.array([_agent(SHARES)._laplace_share(SCALE, SHARES) for _ in range(20_000)])  # the secure one
    assert one.var() == pytest.approx(2 * SCALE**2 / SHARES, rel=0.1)
    assert stats.kstest(one, stats.laplace(scale=SCALE).cdf).pvalue < 1e-6  # one share alone is not


def test_shares_of_a_t_th_would_leave_the_peers_short_of_the_mechanism():
    """Splitting the noise into T shares (the calibration before) makes the T survivors' sum the
    mechanism, and a host's own share taken out leaves its peers with less."""
    view = _peers_view(T)
    assert view.var() == pytest.approx(2 * SCALE**2 * (T - 1) / T, rel=0.1)
    assert stats.kstest(view, stats.laplace(scale=SCALE).cdf).pvalue < 1e-6


def test_only_shared_metrics_carry_a_share_and_their_std_says_so():
    rng = np.random.default_rng(0)
    agent = _agent(SHARES)
    for t in range(800):
        x = list(rng.normal(size=3))
        agent.observe(t, x, int(x[0] > 0))
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    full = np.sqrt(2) / 250 / 0.4
    for trial in out.trials:
        assert trial.noise_std == pytest.approx(full / np.sqrt(SHARES) if trial.shared else full)
    assert {t.shared for t in out.trials} == {True, False}
    assert agent.ledger.max_loss == pytest.approx(5 * 0.5)  # the sum is ε-DP: the same spend


def _filled(shares: int, **cfg) -> FhpoAgent:
    rng = np.random.default_rng(0)
    agent = FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(**cfg), noise_shares=shares)
    for t in range(800):
        x = list(rng.normal(size=3))
        agent.observe(t, x, int(x[0] > 0))
    return agent


def test_the_noise_added_is_a_share_only_on_shared_metrics(monkeypatch):
    """The sampler is replaced by markers: a shared quality is the mean plus exactly one share,
    a clear one goes through the full Laplace mechanism."""
    from fedrift.core import fhpo

    monkeypatch.setattr(fhpo, "score", lambda *a, **k: ([1.0] * 200 + [0.0] * 50, [0.1] * 250))
    monkeypatch.setattr(FhpoAgent, "_laplace_share", lambda self, scale, shares: 1000.0 + shares)
    monkeypatch.setattr(fhpo.Laplace, "randomise", lambda self, value: value + 2000.0)
    out = _filled(SHARES).run_round("r1", FAMILIES["linear"].defaults)
    for trial in out.trials:
        assert trial.noised_quality == pytest.approx(0.8 + (1000.0 + SHARES if trial.shared else 2000.0))


def test_the_optimiser_is_told_no_value_that_carries_only_a_share(monkeypatch):
    """Its next points go out in the clear: telling it a lightly noised shared value leaked that
    value to within one record (found by a review); only full ε-DP releases are told."""
    from skopt import Optimizer

    told = []
    original = Optimizer.tell
    monkeypatch.setattr(Optimizer, "tell", lambda self, x, y, **kw: told.append(-y) or original(self, x, y, **kw))
    distributed = _filled(SHARES).run_round("r1", FAMILIES["linear"].defaults)
    clear = [t.noised_quality for t in distributed.trials if not t.shared]
    assert told == pytest.approx(clear)
    told.clear()
    local = _filled(1).run_round("r1", FAMILIES["linear"].defaults)
    assert len(told) > sum(not t.shared for t in local.trials)  # full local noise: shared values inform it too


def _rounds(replicas: int, threshold: int = 3, distributed: bool = True):
    from agents.federated import FederatedRounds
    from fedrift.core import secagg
    from fedrift.core.masking import SecureAggregation

    agent = FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0),
                      FhpoConfig(min_survivors=threshold, distributed_noise=distributed))
    peers = {f"linear-{r}" for r in range(1, replicas)}
    secure = SecureAggregation("linear", "linear-0", secagg.Identity.generate(), peers, replicas, threshold)
    return FederatedRounds(agent, "linear", "linear-0", secure)


def test_a_share_of_noise_is_used_only_where_values_leave_masked():
    assert _rounds(3).agent.noise_shares == 2
    assert _rounds(3, threshold=2).agent.noise_shares == 1  # a peer minus itself leaves one share: it must be whole
    assert _rounds(2).agent.noise_shares == 1  # secure aggregation off: clear values, full noise
    assert _rounds(3, distributed=False).agent.noise_shares == 1


def test_shared_values_that_cannot_be_masked_are_withheld():
    from fedrift.core.fhpo import RoundOutcome, TrialResult

    rounds = _rounds(3)  # no peer keys: nothing can be masked
    trials = [TrialResult("r1", "linear", "linear-0", c, {}, 0.8, 0.1, 250, 0.5, shared, 0.01)
              for c, shared in (("shared-1", True), ("local-1", False))]
    out = rounds.metrics({"round_id": "r1"}, RoundOutcome("ok", trials))
    assert [o.value["config_id"] for o in out] == ["local-1"]


def test_a_finished_round_waits_for_its_peers_round_keys_then_withholds():
    """A peer reads the trigger, and sends its round keys, only between its batches: a host whose
    round ends first waits for them (``key_wait_s``) rather than withhold its shared metrics."""
    from concurrent.futures import Future

    from fedrift.core.fhpo import RoundOutcome, TrialResult

    rounds = _rounds(3)
    rounds.key_wait_s = 5.0
    trials = [TrialResult("r1", "linear", "linear-0", "shared-1", {}, 0.8, 0.1, 250, 0.5, True, 0.01)]
    future: Future = Future()
    future.set_result((RoundOutcome("ok", trials), rounds.agent))
    rounds.running = ({"round_id": "r1"}, future)
    assert rounds.finished(now=100.0) == [] and rounds.running is None  # no peer keys yet: it waits
    assert rounds.finished(now=104.9) == []
    assert [t["round_id"] for t, _ in rounds.finished(now=105.0)] == ["r1"]  # waited long enough
    assert rounds.finished(now=200.0) == []


def test_a_finished_round_with_nothing_to_mask_is_handed_over_at_once():
    from concurrent.futures import Future

    from fedrift.core.fhpo import RoundOutcome, TrialResult

    rounds = _rounds(3)
    trials = [TrialResult("r1", "linear", "linear-0", "local-1", {}, 0.8, 0.1, 250, 0.5, False, 0.01)]
    future: Future = Future()
    future.set_result((RoundOutcome("ok", trials), rounds.agent))
    rounds.running = ({"round_id": "r1"}, future)
    assert [t["round_id"] for t, _ in rounds.finished(now=0.0)] == ["r1"]

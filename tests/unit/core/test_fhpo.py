import numpy as np
import pytest

from fedrift.core.fhpo import FhpoAgent, FhpoConfig, shared_design
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import BudgetSpent, PrivacyLedger


def _agent(budget=10.0, family="linear", seed=0, **cfg):
    return FhpoAgent(FAMILIES[family], f"{family}-0", PrivacyLedger(budget), FhpoConfig(**cfg), seed=seed)


def _fill(agent, n=800, seed=0):
    rng = np.random.default_rng(seed)
    for t in range(n):
        x = list(rng.normal(size=3))
        agent.observe(t, x, int(x[0] + 0.3 * x[1] > 0))


def test_round_publishes_noised_metrics_on_the_newest_slice():
    agent = _agent(holdout=200, min_train=200)
    _fill(agent)
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    assert out.status == "ok" and len(out.trials) == 1 + 2 + 2
    assert all(t.slice_size == 200 for t in out.trials)
    assert out.trials[0].config == FAMILIES["linear"].defaults and out.trials[0].shared
    # Laplace noise with sensitivity 1/200 and ε=0.4: never exactly a multiple of 1/200
    assert all(abs(t.noised_quality * 200 - round(t.noised_quality * 200)) > 1e-9 for t in out.trials)
    assert out.trials[0].noise_std == pytest.approx(np.sqrt(2) / 200 / 0.4)
    # the per-record ledger covers only the newest 200 events
    assert agent.ledger._loss_over((600, 800)) == pytest.approx(5 * 0.5)
    assert agent.ledger._loss_over((0, 600)) == 0.0


def test_optimizer_is_told_only_noised_values(monkeypatch):
    told = []
    from skopt import Optimizer

    original = Optimizer.tell
    monkeypatch.setattr(Optimizer, "tell", lambda self, x, y, **kw: told.append(y) or original(self, x, y, **kw))
    agent = _agent(holdout=200, min_train=200)
    _fill(agent)
    out = agent.run_round("r1", {"lr": 0.05, "l2": 1e-4})
    assert sorted(told) == sorted(-t.noised_quality for t in out.trials)


def test_budget_is_enforced_and_the_agent_says_so():
    agent = _agent(budget=1.2, holdout=200, min_train=200)  # pays for 2 metrics of ε=0.5
    _fill(agent)
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    assert out.status == "budget spent" and len(out.trials) == 2
    assert agent.ledger.max_loss <= 1.2
    assert agent.run_round("r2", FAMILIES["linear"].defaults).status == "budget spent"
    with pytest.raises(BudgetSpent):
        agent.ledger.spend(0.5, (600, 800))
    for t in range(800, 1000):  # a fresh slice: its records have spent nothing
        agent.observe(t, [1.0, 0.0, 0.0], 1)
    assert len(agent.run_round("r3", FAMILIES["linear"].defaults).trials) == 2


def test_not_enough_data_publishes_nothing():
    agent = _agent()
    _fill(agent, n=100)
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    assert out.status == "not enough data" and out.trials == [] and agent.ledger.max_loss == 0


def test_a_short_window_scores_on_a_smaller_slice_with_noise_to_match():
    agent = _agent(holdout=250, min_train=250, min_holdout=125)
    _fill(agent, n=400)  # 150 events past min_train: a 150-record slice
    out = agent.run_round("r1", FAMILIES["linear"].defaults)
    assert out.status == "ok" and {t.slice_size for t in out.trials} == {150}
    assert out.trials[0].noise_std == pytest.approx(np.sqrt(2) / 150 / 0.4)
    assert agent.ledger._loss_over((250, 400)) == pytest.approx(5 * 0.5)
    assert agent.ledger._loss_over((0, 250)) == 0.0
    short = _agent(holdout=250, min_train=250, min_holdout=125)
    _fill(short, n=374)  # 124 past min_train: below min_holdout
    assert short.run_round("r1", FAMILIES["linear"].defaults).status == "not enough data"


def test_replicas_share_the_design_so_their_metrics_combine():
    fam = FAMILIES["hat"]
    assert shared_design(fam, "round-7", 2) == shared_design(fam, "round-7", 2)
    assert shared_design(fam, "round-7", 2) != shared_design(fam, "round-8", 2)
    a, b = (
        _agent(family="hat", seed=1, holdout=200, min_train=200),
        _agent(family="hat", seed=2, holdout=200, min_train=200),
    )
    _fill(a, seed=1)
    _fill(b, seed=2)
    ids_a = [t.config_id for t in a.run_round("r", fam.defaults).trials if t.shared]
    ids_b = [t.config_id for t in b.run_round("r", fam.defaults).trials if t.shared]
    assert ids_a == ids_b and len(ids_a) == 3


def test_published_noise_does_not_follow_from_the_seed():
    """The attack: knowing the seed (FEDRIFT_SEED, 0 by default), re-draw the noise and subtract it
    from the published metric. Hosts draw it from the secure generator, so a twin agent with the
    same seed and data publishes other values; only an explicit ``noise_seed`` repeats them."""
    def published(noise_seed=None):
        agent = FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0), FhpoConfig(holdout=200, min_train=200),
                          seed=0, noise_seed=noise_seed)
        _fill(agent)
        return [t.noised_quality for t in agent.run_round("r1", FAMILIES["linear"].defaults).trials]

    host, twin = published(), published()
    assert all(a != b for a, b in zip(host, twin, strict=True))
    assert published(noise_seed=7) == published(noise_seed=7)


def test_a_design_named_by_the_trigger_gives_two_runs_the_same_candidates_whatever_their_round_ids():
    fam = FAMILIES["linear"]

    def candidates(round_id: str, design: str) -> list[str]:
        agent = _agent(n_local=0)
        _fill(agent)
        return [t.config_id for t in agent.run_round(round_id, fam.defaults, design=design).trials]

    assert candidates("run1-5143-1", "0-1") == candidates("run2-5150-1", "0-1")
    assert candidates("run1-5143-1", "") != candidates("run2-5150-1", "")

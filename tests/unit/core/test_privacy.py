import pytest

from fedrift.core.privacy import BudgetSpent, PrivacyLedger


def test_overlapping_slices_compose_sequentially_disjoint_in_parallel():
    ledger = PrivacyLedger(budget=1.0)
    ledger.spend(0.5, (0, 100))
    ledger.spend(0.5, (100, 200))
    assert ledger.max_loss == pytest.approx(0.5)
    ledger.spend(0.4, (50, 60))
    assert ledger.max_loss == pytest.approx(0.9)
    assert not ledger.can_spend(0.2, (55, 150))
    with pytest.raises(BudgetSpent):
        ledger.spend(0.2, (0, 300))
    assert ledger.can_spend(1.0, (300, 400))


def test_restore_charges_every_record():
    ledger = PrivacyLedger(budget=2.0)
    ledger.restore(1.5)
    assert ledger.max_loss == pytest.approx(1.5)
    assert not ledger.can_spend(0.6, (10**6, 10**6 + 10))
    assert ledger.can_spend(0.5, (0, 10))


def test_spends_that_add_up_to_the_budget_exactly_are_not_refused_by_rounding():
    """ε = 8 per round over five metrics: 1.6000000000000003 each in floats; the fifth must pass
    (it was refused, so no round completed in the privacy-utility sweep) and a sixth must not."""
    per_metric = 0.8 * 8 / 5 + 0.2 * 8 / 5
    ledger = PrivacyLedger(8.0)
    for _ in range(5):
        ledger.spend(per_metric, (0, 250))
    assert not ledger.can_spend(per_metric, (0, 250))
    assert ledger.max_loss <= 8.0 * (1 + 1e-9)

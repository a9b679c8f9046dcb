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

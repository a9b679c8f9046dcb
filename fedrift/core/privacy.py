"""The per-replica ε ledger: every published metric is debited before it is published.

Each metric is ε-DP with respect to one record of the held-out slice it was computed on (its
sensitivity is the metric's range divided by the slice size). Metrics on *disjoint* slices
compose in parallel, so a record's privacy loss is the sum of ε over the metrics whose slice
contained it; the ledger keeps one diffprivlib ``BudgetAccountant`` per slice and refuses a spend
that would take any record past the budget. Each model's replica has its own ledger with an equal
share of the per-record budget (``model_share``), since every model scores the same records.
(Training records are not covered: protecting them would need DP training.)

>>> ledger = PrivacyLedger(budget=1.0)
>>> ledger.spend(0.6, (0, 100)); ledger.spend(0.6, (100, 200))  # disjoint slices: parallel
>>> ledger.can_spend(0.6, (50, 150)), ledger.max_loss
(False, 0.6)
"""

from __future__ import annotations

from diffprivlib.accountant import BudgetAccountant
from diffprivlib.utils import BudgetError


class BudgetSpent(RuntimeError):
    """The replica's ε budget cannot pay for another metric; it stops publishing."""


ALL = 2**62  # a position past every record's
SLACK = 1e-9  # relative: ε's that add up to the budget exactly must not be refused by rounding


class PrivacyLedger:
    exhausted_before: int = -ALL  # records before this position may not be scored (a lost ledger)

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self._slices: dict[tuple[int, int], BudgetAccountant] = {}
        self.total_sequential = 0.0  # the plain sum, an upper bound reported beside the per-record loss

    @property
    def _limit(self) -> float:
        return self.budget * (1 + SLACK)

    def _loss_over(self, span: tuple[int, int]) -> float:
        """The largest loss of any record in ``span`` (sum over the slices covering it)."""
        a, b = span
        points = {a} | {s for s, _ in self._slices if a <= s < b}
        return max(
            (sum(acc.total()[0] for (s, e), acc in self._slices.items() if s <= p < e) for p in points),
            default=0.0,
        )

    def can_spend(self, epsilon: float, span: tuple[int, int]) -> bool:
        if span[0] < self.exhausted_before:
            return False
        if span in self._slices:
            try:
                self._slices[span].check(epsilon, 0.0)
            except BudgetError:
                return False
        return self._loss_over(span) + epsilon <= self._limit

    def spend(self, epsilon: float, span: tuple[int, int]) -> None:
        if not self.can_spend(epsilon, span):
            raise BudgetSpent(f"spending ε={epsilon:g} on records {span} would exceed the budget {self.budget:g}")
        self._slices.setdefault(span, BudgetAccountant(epsilon=self._limit, delta=0.0)).spend(epsilon, 0.0)
        self.total_sequential += epsilon

    def restore(self, spent: float) -> None:
        """After a restart: charge ``spent`` (the last published loss) to every record, past and
        future. Conservative: the positions of the old slices are not known any more."""
        if spent > 0:
            acc = BudgetAccountant(epsilon=max(self.budget, spent), delta=0.0)
            acc.spend(spent, 0.0)
            self._slices[(-(2**62), 2**62)] = acc
            self.total_sequential += spent

    def exhaust_before(self, position: int) -> None:
        """Count the whole budget as spent for every record before ``position``: what was spent
        on them is unknown (the ledger was lost with its checkpoint), so none may be scored
        again. A later call sets the bound anew: everything (``ALL``) until a replay shows which
        positions the lost records took, then just those.

        >>> ledger = PrivacyLedger(budget=1.0)
        >>> ledger.exhaust_before(ALL)
        >>> ledger.can_spend(0.1, (5000, 5100))
        False
        >>> ledger.exhaust_before(100)
        >>> ledger.can_spend(0.1, (50, 150)), ledger.can_spend(0.1, (100, 150))
        (False, True)
        """
        self.exhausted_before = position

    @classmethod
    def model_share(cls, budget: float, n_models: int) -> PrivacyLedger:
        """The ledger of one model's replica when ``budget`` is per record across the pool.

        Every model scores every record of a partition (one replica per model owns it), each
        with its own ledger in its own process, so a record's loss is the sum over the pool's
        models: each gets an equal share, and the sum stays within ``budget``.

        >>> PrivacyLedger.model_share(10.0, 4).budget
        2.5
        """
        return cls(budget / max(n_models, 1))

    @property
    def max_loss(self) -> float:
        """The largest privacy loss of any single record so far."""
        return max((self._loss_over((s, e)) for s, e in self._slices), default=0.0)

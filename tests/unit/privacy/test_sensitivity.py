"""The sensitivity the DP noise is calibrated to, checked by the attack: replace one record of the
scoring slice and measure how far the published statistic (hits on the slice) moves.

The noise assumes one slice record moves the mean quality by at most 1/n, i.e. the hit count by
at most one. The attacker replaces a record by an outlier with its label flipped, at many
positions of the slice; the worst change seen must stay within that bound. The same attack on
test-then-train scoring (the model learning each slice record after predicting it) shows why
that scoring is not used: there one record moves many later predictions.
"""

from __future__ import annotations

import pytest

from fedrift import datasets
from fedrift.core.fhpo import score
from fedrift.core.metrics import Accuracy
from fedrift.core.models import FAMILIES

N_TRAIN, N_SLICE = 500, 250


def _events(stream: str) -> list[tuple[int, list[float], int]]:
    rows = datasets.synthetic(stream, N_TRAIN + N_SLICE, seed=3)
    return [(i, list(x), int(y)) for i, (x, y) in enumerate(rows)]


def _hits(family: str, events: list, learn_in_slice: bool = False) -> int:
    fam = FAMILIES[family]
    model = fam.build(fam.defaults, seed=0)
    train, holdout = events[:N_TRAIN], events[N_TRAIN:]
    if not learn_in_slice:
        return int(sum(score(model, train, holdout, Accuracy(), 5.0)[0]))
    for _, x, y in train:
        model.learn_one(x, y)
    hits = 0
    for _, x, y in holdout:
        hits += int(model.predict_one(x) == y)
        model.learn_one(x, y)
    return hits


def _worst_change(family: str, stream: str, learn_in_slice: bool = False) -> int:
    events = _events(stream)
    base = _hits(family, events, learn_in_slice)
    worst = 0
    for pos in range(N_TRAIN, N_TRAIN + N_SLICE, 25):
        t, x, y = events[pos]
        outlier = (t, [v * 1e3 + 1e3 for v in x], 1 - y)
        worst = max(worst, abs(_hits(family, [*events[:pos], outlier, *events[pos + 1:]], learn_in_slice) - base))
    return worst


@pytest.mark.parametrize("family", ["linear", "pa", "hat", "knn", "gnb"])
def test_one_replaced_slice_record_moves_the_hit_count_by_at_most_one(family):
    assert _worst_change(family, "agrawal") <= 1


def test_the_attack_breaks_test_then_train_scoring():
    assert _worst_change("linear", "agrawal", learn_in_slice=True) > 1

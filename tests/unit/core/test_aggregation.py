import pytest

from fedrift.core.aggregation import Aggregator, Contribution, PairwiseMasker


def test_masks_cancel_only_over_the_whole_group():
    m = PairwiseMasker(["a", "b", "c", "d"], group_secret=b"s")
    vals = {"a": 100.0, "b": 250.0, "c": 75.5, "d": 0.0}
    shares = {k: m.mask(k, "r", "cfg", v) for k, v in vals.items()}
    assert sum(shares.values()) == pytest.approx(sum(vals.values()), abs=1e-6)
    assert all(abs(shares[k] - vals[k]) > 1.0 for k in vals)  # no single share reveals its value
    assert sum(shares[k] for k in "abc") != pytest.approx(sum(vals[k] for k in "abc"), abs=1e-3)


def _c(agent, cid, q, n, masked=False, masker=None):
    w = q * n
    if masked:
        w = masker.mask(agent, "r", cid, w)
    return Contribution(agent, cid, {"k": cid}, w, n, noise_std=0.0, masked=masked)


def test_scores_are_slice_weighted_and_masked_sums_unmask():
    group = ["a", "b", "c"]
    masker = PairwiseMasker(group, b"x")
    agg = Aggregator("m", "r", group)
    for agent, q, n in [("a", 0.9, 100), ("b", 0.6, 300), ("c", 0.8, 100)]:
        agg.add(_c(agent, "shared", q, n, masked=True, masker=masker))
    agg.add(_c("a", "solo", 0.95, 10))
    agg.add(_c("a", "solo", 0.95, 10))  # a redelivered metric counts once
    out = agg.result()
    shared = next(s for s in out.leaderboard if s.config_id == "shared")
    assert shared.score == pytest.approx((0.9 * 100 + 0.6 * 300 + 0.8 * 100) / 500)
    assert shared.agents == group
    solo = next(s for s in out.leaderboard if s.config_id == "solo")
    assert solo.agents == ["a"] and solo.std > shared.std


def test_best_is_chosen_by_lower_bound_and_incomplete_masked_groups_are_dropped():
    group = ["a", "b", "c"]
    masker = PairwiseMasker(group, b"x")
    agg = Aggregator("m", "r", group)
    for agent in group:
        agg.add(_c(agent, "solid", 0.85, 300, masked=True, masker=masker))
    agg.add(_c("a", "lucky", 0.87, 20))
    agg.add(_c("a", "partial", 0.99, 300, masked=True, masker=masker))
    out = agg.result()
    assert out.best.config_id == "solid"
    assert out.dropped == ["partial"]


def test_a_dropped_agent_is_recovered_from_the_survivors_shares():
    group = ["a", "b", "c", "d"]
    masker = PairwiseMasker(group, b"x")
    agg = Aggregator("m", "r", group)
    for agent, q, n in [("a", 0.9, 100), ("b", 0.6, 300), ("c", 0.8, 100)]:  # d never reports
        agg.add(_c(agent, "shared", q, n, masked=True, masker=masker))
    assert agg.incomplete_masked() == {"shared": ["d"]}
    assert agg.result().dropped == ["shared"]  # without recovery the masks do not cancel
    assert agg.declare_dropped() == {"shared": ["d"]}
    for agent in ("a", "b"):
        agg.add_recovery(agent, "shared", ["d"], masker.recovery_share(agent, ["d"], "r", "shared"))
    assert agg.result().dropped == ["shared"]  # c has not answered yet
    agg.add_recovery("c", "shared", ["d"], masker.recovery_share("c", ["d"], "r", "shared"))
    agg.add(_c("d", "shared", 0.1, 100, masked=True, masker=masker))  # too late: refused
    out = agg.result()
    assert out.dropped == []
    shared = out.leaderboard[0]
    assert shared.agents == ["a", "b", "c"]
    assert shared.score == pytest.approx((0.9 * 100 + 0.6 * 300 + 0.8 * 100) / 500)


def test_recovery_needs_two_survivors_and_the_declared_set():
    group = ["a", "b", "c"]
    masker = PairwiseMasker(group, b"x")
    agg = Aggregator("m", "r", group)
    agg.add(_c("a", "shared", 0.9, 100, masked=True, masker=masker))
    agg.declare_dropped()
    agg.add_recovery("a", "shared", ["b", "c"], masker.recovery_share("a", ["b", "c"], "r", "shared"))
    assert agg.result().dropped == ["shared"]  # one survivor's value would be exposed alone
    agg2 = Aggregator("m", "r", group)
    for agent in ("a", "b"):
        agg2.add(_c(agent, "shared", 0.5, 100, masked=True, masker=masker))
    agg2.declare_dropped()
    agg2.add_recovery("a", "shared", ["b"], 0.0)  # a share for another dropped set is ignored
    assert agg2.recovery == {}

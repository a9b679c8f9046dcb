import pytest

from fedrift.core.aggregation import AgentKeys, Aggregator, Contribution, PairwiseMasker


def _maskers(group, known=None):
    """One masker per agent; ``known[a]`` limits the public keys agent ``a`` has seen."""
    keys = {a: AgentKeys.generate() for a in group}
    public = {a: k.public_bytes for a, k in keys.items()}
    return {
        a: PairwiseMasker(a, keys[a].pair_secrets(a, {p: public[p] for p in (known or {}).get(a, group)}, b"m"))
        for a in group
    }


def test_both_sides_of_a_pair_derive_the_same_secret_and_contexts_differ():
    a, b, c = AgentKeys.generate(), AgentKeys.generate(), AgentKeys.generate()
    ab = a.pair_secrets("a", {"b": b.public_bytes}, b"m1")["b"]
    assert ab == b.pair_secrets("b", {"a": a.public_bytes}, b"m1")["a"]
    assert ab != a.pair_secrets("a", {"b": b.public_bytes}, b"m2")["b"]
    assert ab != a.pair_secrets("a", {"c": c.public_bytes}, b"m1")["c"]
    restored = AgentKeys.from_private_bytes(a.private_bytes())
    assert restored.public_bytes == a.public_bytes
    assert restored.pair_secrets("a", {"b": b.public_bytes}, b"m1")["b"] == ab


def test_masks_cancel_only_over_the_whole_group():
    m = _maskers(["a", "b", "c", "d"])
    vals = {"a": 100.0, "b": 250.0, "c": 75.5, "d": 0.0}
    shares = {k: m[k].mask("r", "cfg", v) for k, v in vals.items()}
    assert sum(shares.values()) == pytest.approx(sum(vals.values()), abs=1e-6)
    assert all(abs(shares[k] - vals[k]) > 1.0 for k in vals)  # no single share reveals its value
    assert sum(shares[k] for k in "abc") != pytest.approx(sum(vals[k] for k in "abc"), abs=1e-3)
    assert m["a"].peers == ["b", "c", "d"]


def _c(agent, cid, q, n, masker=None):
    w = q * n
    if masker is None:
        return Contribution(agent, cid, {"k": cid}, w, n, noise_std=0.0)
    return Contribution(agent, cid, {"k": cid}, masker.mask("r", cid, w), n, 0.0, True, tuple(masker.peers))


def test_scores_are_slice_weighted_and_masked_sums_unmask():
    group = ["a", "b", "c"]
    m = _maskers(group)
    agg = Aggregator("m", "r", group)
    for agent, q, n in [("a", 0.9, 100), ("b", 0.6, 300), ("c", 0.8, 100)]:
        agg.add(_c(agent, "shared", q, n, m[agent]))
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
    m = _maskers(group)
    agg = Aggregator("m", "r", group)
    for agent in group:
        agg.add(_c(agent, "solid", 0.85, 300, m[agent]))
    agg.add(_c("a", "lucky", 0.87, 20))
    agg.add(_c("a", "partial", 0.99, 300, m["a"]))
    out = agg.result()
    assert out.best.config_id == "solid"
    assert out.dropped == ["partial"]


def test_a_dropped_agent_is_recovered_from_the_survivors_shares():
    group = ["a", "b", "c", "d"]
    m = _maskers(group)
    agg = Aggregator("m", "r", group)
    for agent, q, n in [("a", 0.9, 100), ("b", 0.6, 300), ("c", 0.8, 100)]:  # d never reports
        agg.add(_c(agent, "shared", q, n, m[agent]))
    assert agg.incomplete_masked() == {"shared": ["d"]}
    assert agg.result().dropped == ["shared"]  # without recovery the masks do not cancel
    assert agg.declare_dropped() == {"shared": ["d"]}
    for agent in ("a", "b"):
        share, covered = m[agent].recovery_share(["d"], "r", "shared")
        agg.add_recovery(agent, "shared", covered, share)
    assert agg.result().dropped == ["shared"]  # c has not answered yet
    share, covered = m["c"].recovery_share(["d"], "r", "shared")
    agg.add_recovery("c", "shared", covered, share)
    agg.add(_c("d", "shared", 0.1, 100, m["d"]))  # too late: refused
    out = agg.result()
    assert out.dropped == []
    shared = out.leaderboard[0]
    assert shared.agents == ["a", "b", "c"]
    assert shared.score == pytest.approx((0.9 * 100 + 0.6 * 300 + 0.8 * 100) / 500)


def test_an_agent_that_never_published_a_key_is_left_out_of_every_mask():
    group = ["a", "b", "c", "d"]  # d never started: nobody has its key
    m = _maskers(group, known={a: ["a", "b", "c"] for a in "abc"})
    agg = Aggregator("m", "r", group)
    for agent, q in [("a", 0.9), ("b", 0.6), ("c", 0.8)]:
        agg.add(_c(agent, "shared", q, 100, m[agent]))
    assert agg.incomplete_masked() == {"shared": ["d"]}
    assert agg.result().leaderboard[0].score == pytest.approx((0.9 + 0.6 + 0.8) / 3)  # no recovery needed


def test_masks_that_do_not_pair_up_are_never_summed():
    group = ["a", "b", "c"]  # a has not seen c's key yet, c has seen a's: their masks do not cancel
    m = _maskers(group, known={"a": ["a", "b"], "b": group, "c": group})
    agg = Aggregator("m", "r", group)
    for agent in group:
        agg.add(_c(agent, "shared", 0.5, 100, m[agent]))
    out = agg.result()
    assert out.dropped == ["shared"] and out.leaderboard == []


def test_recovery_needs_two_survivors_the_declared_set_and_never_exposes_a_survivor():
    group = ["a", "b", "c"]
    m = _maskers(group)
    assert m["a"].recovery_share(["b", "c"], "r", "shared") is None  # would reveal a's own value
    agg = Aggregator("m", "r", group)
    for agent in ("a", "b"):
        agg.add(_c(agent, "shared", 0.5, 100, m[agent]))
    agg.declare_dropped()
    agg.add_recovery("a", "shared", ["b"], 0.0)  # a share for another dropped set is ignored
    assert agg.recovery == {}
    share, covered = m["a"].recovery_share(["c"], "r", "shared")
    agg.add_recovery("a", "shared", covered, share)
    assert agg.result().dropped == ["shared"]  # b still owes its share

"""Aggregating one round: slice-weighted scores, the best by lower bound, masks removed exactly."""

import pytest

from fedrift.core.aggregation import Aggregator, Contribution
from tests.secagg_group import exchange, group, metric


def _clear(agent, cid, q, n):
    return Contribution(agent, cid, {"k": cid}, q * n, n, noise_std=0.0)


def _masked(m: dict) -> Contribution:
    return Contribution(m["agent"], m["config_id"], {"k": m["config_id"]}, 0.0, m["slice_size"], 0.0,
                        m["masked_value"], tuple(m["masked_with"]), m["mask_key"])


def _unmask(agg: Aggregator, hosts, request_from=None) -> None:
    survivors, dropped = agg.declare()
    for h in request_from or survivors:
        share = hosts[h].unmask({"round_id": agg.round_id, "model": "m", "time": 0, "survivors": survivors,
                                 "dropped_agents": dropped})
        if share is not None:  # a host may refuse (e.g. a survivor it did not mask with)
            agg.add_unmask(h, share["share_index"], share["seed_shares"], share["key_shares"])


def test_scores_are_slice_weighted_and_masked_sums_unmask_exactly():
    hosts = group(3)
    exchange(hosts, "r")
    agg = Aggregator("m", "r", list(hosts), threshold=3)
    for h, q, n in [("m-0", 0.9, 100), ("m-1", 0.6, 300), ("m-2", 0.8, 100)]:
        assert agg.add(_masked(metric(hosts[h], "r", "shared", q * n, n)))
    agg.add(_clear("m-0", "solo", 0.95, 10))
    assert not agg.add(_clear("m-0", "solo", 0.95, 10))  # a redelivered metric counts once
    _unmask(agg, hosts)
    out = agg.result()
    shared = next(s for s in out.leaderboard if s.config_id == "shared")
    assert shared.score == pytest.approx((0.9 * 100 + 0.6 * 300 + 0.8 * 100) / 500, abs=1e-6)
    solo = next(s for s in out.leaderboard if s.config_id == "solo")
    assert solo.agents == ["m-0"] and solo.std > shared.std


def test_the_best_is_chosen_by_lower_bound():
    agg = Aggregator("m", "r", ["m-0", "m-1", "m-2"], threshold=3)
    for h in ("m-0", "m-1", "m-2"):
        agg.add(_clear(h, "solid", 0.85, 300))
    agg.add(_clear("m-0", "lucky", 0.87, 20))
    assert agg.result().best.config_id == "solid"


def test_a_dropped_host_is_removed_with_the_survivors_key_shares():
    hosts = group(4, threshold=3)
    exchange(hosts, "r")
    agg = Aggregator("m", "r", list(hosts), threshold=3)
    for h, v in [("m-0", 90.0), ("m-1", 180.0), ("m-2", 80.0)]:  # m-3 sent its keys, then died
        agg.add(_masked(metric(hosts[h], "r", "shared", v)))
    assert agg.result().dropped == ["shared"]  # masks in place until the survivors answer
    _unmask(agg, hosts)
    assert agg.dropped == ["m-3"]
    [score] = agg.result().leaderboard
    assert score.score * 300 == pytest.approx(350.0, abs=1e-5) and score.agents == ["m-0", "m-1", "m-2"]


def test_a_host_that_never_sent_round_keys_is_in_nobody_s_masks():
    hosts = group(4, threshold=3)
    exchange(hosts, "r", joined=["m-0", "m-1", "m-2"])
    agg = Aggregator("m", "r", list(hosts), threshold=3)
    for h in ("m-0", "m-1", "m-2"):
        agg.add(_masked(metric(hosts[h], "r", "shared", 50.0)))
    _unmask(agg, hosts)
    assert agg.dropped == [] and agg.result().leaderboard[0].score * 300 == pytest.approx(150.0, abs=1e-5)


def test_masks_that_do_not_pair_up_are_never_summed():
    hosts = group(4, threshold=3)
    keys = {h: hosts[h].join("r") for h in hosts}
    for h in hosts:  # m-0 never got m-3's keys; m-3 got m-0's: their pair masks cannot cancel
        for k, rk in keys.items():
            if (h, k) != ("m-0", "m-3"):
                hosts[h].on_round_keys(rk)
    agg = Aggregator("m", "r", list(hosts), threshold=3)
    for h in hosts:
        agg.add(_masked(metric(hosts[h], "r", "shared", 50.0)))
    _unmask(agg, hosts)
    out = agg.result()
    assert out.dropped == ["shared"] and out.leaderboard == []


def test_nothing_masked_is_summed_below_the_threshold_or_before_every_survivor_answers():
    hosts = group(4, threshold=3)
    exchange(hosts, "r")
    agg = Aggregator("m", "r", list(hosts), threshold=3)
    for h in ("m-0", "m-1"):
        agg.add(_masked(metric(hosts[h], "r", "shared", 50.0)))
    assert agg.declare() == (["m-0", "m-1"], ["m-2", "m-3"])
    assert hosts["m-0"].unmask({"round_id": "r", "model": "m", "time": 0, "survivors": ["m-0", "m-1"],
                                "dropped_agents": ["m-2", "m-3"]}) is None  # 2 survivors < t
    assert agg.result().dropped == ["shared"]

"""The aggregator stage: rounds close on completeness or timeout, with dropout recovery."""

import math

import pytest

from fedrift.core.aggregation import AgentKeys, PairwiseMasker
from fedrift.core.aggregator import RoundBook
from schemas import InvalidRecord


def _maskers(group):
    keys = {a: AgentKeys.generate() for a in group}
    public = {a: k.public_bytes for a, k in keys.items()}
    return {a: PairwiseMasker(a, keys[a].pair_secrets(a, public, b"m")) for a in group}


def _metric(agent, cid, q, maskers=None, n=200):
    shares = [maskers[agent].mask("r1", cid, q * n)] if maskers else []
    return {
        "model": "m",
        "round_id": "r1",
        "agent": agent,
        "config_id": cid,
        "config_json": "{}",
        "noised_quality": math.nan if maskers else q,
        "slice_size": n,
        "masked_shares": shares,
        "masked_with": maskers[agent].peers if maskers else [],
        "noised_latency_ms": 0.1,
        "epsilon_spent": 0.5,
        "noise_std": 0.01,
    }


def test_round_book_closes_a_round_when_every_replica_reported_and_unmasks_the_sum():
    masker = _maskers(["m-0", "m-1", "m-2"])
    book = RoundBook(replicas=3, expected_per_agent=2, timeout_s=60)
    out = []
    for agent, q in (("m-0", 0.8), ("m-1", 0.7), ("m-2", 0.9)):
        assert out == []
        book.on_metric(_metric(agent, "shared", q, masker), now=0.0)
        out = book.on_metric(_metric(agent, f"solo-{agent}", 0.5), now=0.0)
    [aggregate] = out
    shared = next(s for s in aggregate.value["leaderboard"] if s["config_id"] == "shared")
    assert shared["score"] == pytest.approx(0.8) and shared["agents"] == 3
    assert book.on_metric(_metric("m-0", "late", 0.99), now=1.0) == []  # a closed round ignores late metrics


def test_round_book_recovers_a_replica_that_never_reported():
    masker = _maskers(["m-0", "m-1", "m-2"])
    book = RoundBook(replicas=3, expected_per_agent=1, timeout_s=10.0)
    for agent, q in (("m-0", 0.8), ("m-1", 0.6)):  # m-2 died mid-round
        assert book.on_metric(_metric(agent, "shared", q, masker), now=0.0) == []
    assert book.tick(now=5.0, now_ms=0) == []
    [request] = book.tick(now=11.0, now_ms=0)
    assert request.record == "UnmaskRequest" and request.value["dropped"] == {"shared": ["m-2"]}
    shares = [
        {
            "round_id": "r1",
            "model": "m",
            "agent": agent,
            "config_id": "shared",
            "dropped": ["m-2"],
            "share": masker[agent].recovery_share(["m-2"], "r1", "shared")[0],
        }
        for agent in ("m-0", "m-1")
    ]
    assert book.on_share(shares[0]) == []
    assert book.on_metric(_metric("m-2", "shared", 0.1, masker), now=12.0) == []  # its late metric is refused
    [aggregate] = book.on_share(shares[1])
    assert aggregate.value["best_config_id"] == "shared" and aggregate.value["score"] == pytest.approx(0.7)
    assert aggregate.value["agents"] == ["m-0", "m-1"]


def test_round_book_closes_without_recovery_when_nothing_is_masked():
    book = RoundBook(replicas=3, expected_per_agent=2, timeout_s=0.0)
    book.on_metric(_metric("m-0", "solo", 0.5), now=0.0)
    [aggregate] = book.tick(now=1.0, now_ms=0)
    assert aggregate.record == "AggregateResult"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"slice_size": 0}, "not positive"),
        ({"slice_size": -5}, "not positive"),
        ({"noised_quality": math.inf}, "finite noised_quality"),
        ({"masked_shares": [math.nan], "masked_with": ["m-1"]}, "one finite value"),
        ({"noise_std": -3.0}, "noise_std"),
        ({"config_json": "{not json"}, "not JSON"),
    ],
)
def test_an_unusable_metric_is_refused_and_the_round_goes_on(change, why):
    book = RoundBook(replicas=1, expected_per_agent=1, timeout_s=60)
    with pytest.raises(InvalidRecord, match=why):
        book.on_metric({**_metric("m-0", "c", 0.5), **change}, now=0.0)
    assert [o.record for o in book.on_metric(_metric("m-0", "c", 0.5), now=0.0)] == ["AggregateResult"]

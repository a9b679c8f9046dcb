"""The small pieces of logic inside the stream-processor shells (no broker needed)."""

import math

import pytest

from fedrift.config import Settings
from fedrift.core.aggregation import AgentKeys, PairwiseMasker
from streams.aggregator import RoundBook


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
    }


def test_round_book_closes_a_round_when_every_replica_reported_and_unmasks_the_sum():
    settings = Settings(replicas=3)
    masker = _maskers(["m-0", "m-1", "m-2"])
    book = RoundBook(settings, expected_per_agent=2, timeout_s=60)
    done = None
    for agent, q in (("m-0", 0.8), ("m-1", 0.7), ("m-2", 0.9)):
        assert done is None
        book.add(_metric(agent, "shared", q, masker))
        done = book.add(_metric(agent, f"solo-{agent}", 0.5))
    assert done == ("m", "r1")
    result = book.close(done)
    shared = next(s for s in result.leaderboard if s.config_id == "shared")
    assert shared.score == pytest.approx(0.8)
    assert book.add(_metric("m-0", "late", 0.99)) is None  # a closed round ignores late metrics


def test_round_book_recovers_a_replica_that_never_reported():
    settings = Settings(replicas=3)
    group = ["m-0", "m-1", "m-2"]
    masker = _maskers(group)
    book = RoundBook(settings, expected_per_agent=1, timeout_s=0.0)
    for agent, q in (("m-0", 0.8), ("m-1", 0.6)):  # m-2 died mid-round
        assert book.add(_metric(agent, "shared", q, masker)) is None
    [(key, request)] = book.due()
    assert key == ("m", "r1") and request["dropped"] == {"shared": ["m-2"]}
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
    assert book.add_share(shares[0]) is None
    assert book.add(_metric("m-2", "shared", 0.1, masker)) is None  # its late metric is refused
    assert book.add_share(shares[1]) == key
    result = book.close(key)
    assert result.dropped == []
    assert result.best.config_id == "shared" and result.best.score == pytest.approx(0.7)
    assert result.best.agents == ["m-0", "m-1"]


def test_round_book_closes_without_recovery_when_nothing_is_masked():
    book = RoundBook(Settings(replicas=3), expected_per_agent=2, timeout_s=0.0)
    book.add(_metric("m-0", "solo", 0.5))
    assert book.due() == [(("m", "r1"), None)]

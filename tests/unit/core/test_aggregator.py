"""The aggregator stage: a round names its survivors once, closes on their answers or a timeout."""

import math

import pytest

from schemas import InvalidRecord
from tests.secagg_group import book, clear_metric, exchange, group, metric


def test_a_complete_round_asks_for_shares_once_and_closes_on_the_answers():
    hosts = group(3)
    exchange(hosts, "r1")
    rounds = book(hosts=hosts)
    out = []
    for h, q in (("m-0", 0.8), ("m-1", 0.7), ("m-2", 0.9)):
        assert out == []
        out = rounds.on_metric(metric(hosts[h], "r1", "shared", q * 200, 200), now=0.0)
    [request] = out
    assert request.record == "UnmaskRequest" and request.value["survivors"] == sorted(hosts)
    assert request.value["dropped_agents"] == []
    answers = [hosts[h].unmask(request.value) for h in sorted(hosts)]
    assert rounds.on_share(answers[0]) == [] and rounds.on_share(answers[1]) == []
    [aggregate] = rounds.on_share(answers[2])
    assert aggregate.value["score"] == pytest.approx(0.8, abs=1e-6) and aggregate.value["agents"] == sorted(hosts)
    late = clear_metric(hosts["m-0"], "late", 0.99)
    assert rounds.on_metric(late, now=1.0) == []  # a closed round ignores late metrics


def test_a_replica_that_never_reported_is_named_dropped_at_the_timeout():
    hosts = group(4, threshold=3)
    exchange(hosts, "r1")
    rounds = book(n=4, threshold=3, timeout_s=10.0, hosts=hosts)
    for h, q in (("m-0", 0.8), ("m-1", 0.6), ("m-2", 0.7)):  # m-3 died mid-round
        assert rounds.on_metric(metric(hosts[h], "r1", "shared", q * 200, 200), now=0.0) == []
    assert rounds.tick(now=5.0, now_ms=0) == []
    [request] = rounds.tick(now=11.0, now_ms=11_000)
    assert request.value["dropped_agents"] == ["m-3"] and request.value["time"] == 11_000
    late = metric(hosts["m-3"], "r1", "shared", 0.1 * 200, 200)
    assert rounds.on_metric(late, now=12.0) == []  # refused: the survivors were named without it
    out = []
    for h in ("m-0", "m-1", "m-2"):
        out = rounds.on_share(hosts[h].unmask(request.value))
    [aggregate] = out
    assert aggregate.value["score"] == pytest.approx(0.7, abs=1e-6)
    assert aggregate.value["agents"] == ["m-0", "m-1", "m-2"]


def test_too_few_survivors_close_the_round_without_a_request_or_a_masked_score():
    hosts = group(3)
    exchange(hosts, "r1")
    rounds = book(timeout_s=1.0, hosts=hosts)
    rounds.on_metric(metric(hosts["m-0"], "r1", "shared", 100.0), now=0.0)
    rounds.on_metric(metric(hosts["m-1"], "r1", "shared", 100.0), now=0.0)
    rounds.on_metric(clear_metric(hosts["m-1"], "solo", 0.5), now=0.0)
    [aggregate] = rounds.tick(now=2.0, now_ms=0)
    assert aggregate.record == "AggregateResult" and aggregate.value["best_config_id"] == "solo"


def test_a_round_without_masked_metrics_closes_at_once():
    hosts = group(3)
    rounds = book(timeout_s=0.0, hosts=hosts)
    rounds.on_metric(clear_metric(hosts["m-0"], "solo", 0.5), now=0.0)
    [aggregate] = rounds.tick(now=1.0, now_ms=0)
    assert aggregate.record == "AggregateResult"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"slice_size": 0}, "not positive"),
        ({"slice_size": -5}, "not positive"),
        ({"noised_quality": math.inf}, "finite noised_quality"),
        ({"masked_value": -1, "mask_key": bytes(32)}, "2\\^62"),
        ({"masked_value": 5, "mask_key": b"short"}, "mask key"),
        ({"noise_std": -3.0}, "noise_std"),
        ({"config_json": "{not json"}, "not JSON"),
    ],
)
def test_an_unusable_metric_is_refused_and_the_round_goes_on(change, why):
    hosts = group(1)
    rounds = book(n=1, timeout_s=60, hosts=hosts)
    with pytest.raises(InvalidRecord, match=why):
        rounds.on_metric({**clear_metric(hosts["m-0"], "c", 0.5), **change}, now=0.0)
    assert [o.record for o in rounds.on_metric(clear_metric(hosts["m-0"], "c", 0.5), now=0.0)] == ["AggregateResult"]


def test_unusable_shares_are_refused():
    hosts = group(3)
    rounds = book(hosts=hosts)
    bad = {"round_id": "r1", "model": "m", "agent": "m-0", "share_index": 1,
           "seed_shares": {"m-0": b"short"}, "key_shares": {}, "signature": b""}
    exchange(hosts, "r1")
    for h in hosts:
        rounds.on_metric(metric(hosts[h], "r1", "shared", 1.0), now=0.0)
    with pytest.raises(InvalidRecord, match="16 bytes"):
        rounds.on_share(bad)
    with pytest.raises(InvalidRecord, match="in one answer"):
        rounds.on_share({**bad, "seed_shares": {"m-1": bytes(16)}, "key_shares": {"m-1": bytes(32)}})

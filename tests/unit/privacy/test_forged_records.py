"""Forgery on ``hpo.metrics``: Kafka's ACLs let every host principal write the topic, so one host
could publish a metric or an unmask answer in a peer's name and spoil (or steer) the round's sum.
The aggregator takes only records signed by the named agent's key, pinned from ``hpo.keys``."""

from __future__ import annotations

import pytest

from fedrift.core import secagg
from fedrift.core.masking import SecureAggregation
from schemas import InvalidRecord
from tests.secagg_group import book, clear_metric, exchange, group, metric


def _masked_round():
    hosts = group(3)
    exchange(hosts, "r1")
    return hosts, book(hosts=hosts)


def test_a_metric_in_a_peers_name_is_refused_and_the_round_sums_the_genuine_ones():
    hosts, rounds = _masked_round()
    genuine = metric(hosts["m-0"], "r1", "shared", 0.8 * 200, 200)
    forged = hosts["m-1"].sign_metric({**genuine, "masked_value": (genuine["masked_value"] + 10**9) % secagg.MODULUS})
    with pytest.raises(InvalidRecord, match="m-0 not signed by its pinned key"):
        rounds.on_metric(forged, now=0.0)
    out = []
    for h, q in (("m-0", 0.8), ("m-1", 0.7), ("m-2", 0.9)):
        out = rounds.on_metric(genuine if h == "m-0" else metric(hosts[h], "r1", "shared", q * 200, 200), now=0.0)
    [request] = out
    answers = [hosts[h].unmask(request.value) for h in sorted(hosts)]
    [aggregate] = [o for a in answers for o in rounds.on_share(a)]
    assert aggregate.value["score"] == pytest.approx(0.8, abs=1e-6)


def test_a_genuine_metric_changed_in_transit_is_refused():
    hosts = group(3)
    rounds = book(hosts=hosts)
    signed = clear_metric(hosts["m-2"], "c", 0.6)
    for change in ({"noised_quality": 0.99}, {"slice_size": 5000}, {"config_id": "other"}, {"agent": "m-1"}):
        with pytest.raises(InvalidRecord, match="not signed by its pinned key"):
            rounds.on_metric({**signed, **change}, now=0.0)


def test_a_metric_from_a_host_with_no_pinned_key_is_refused():
    hosts = group(3)
    rounds = book(hosts={h: hosts[h] for h in ("m-0", "m-1")})
    with pytest.raises(InvalidRecord, match="m-2 not signed"):
        rounds.on_metric(clear_metric(hosts["m-2"], "c", 0.6), now=0.0)


def test_an_unmask_answer_in_a_peers_name_is_refused():
    hosts, rounds = _masked_round()
    out = []
    for h, q in (("m-0", 0.8), ("m-1", 0.7), ("m-2", 0.9)):
        out = rounds.on_metric(metric(hosts[h], "r1", "shared", q * 200, 200), now=0.0)
    [request] = out
    answers = {h: hosts[h].unmask(request.value) for h in sorted(hosts)}
    # m-2 answers as m-0 with shares of its own making (signed with its own key): a spoiled sum
    spoiled = {**answers["m-0"], "seed_shares": {a: bytes(16) for a in answers["m-0"]["seed_shares"]}}
    spoiled["signature"] = hosts["m-2"].identity.sign(b"anything")
    with pytest.raises(InvalidRecord, match="UnmaskShare in the name of m-0"):
        rounds.on_share(spoiled)
    results = [o for h in sorted(hosts) for o in rounds.on_share(answers[h])]
    assert [o.value["score"] for o in results] == [pytest.approx(0.8, abs=1e-6)]


def test_a_key_substituted_at_the_aggregator_is_refused_and_the_name_no_longer_trusted():
    hosts = group(3)
    rounds = book(hosts=hosts)
    impostor = SecureAggregation("m", "m-1", secagg.Identity.generate(), {"m-0", "m-2"}, 3, 3)
    assert "other keys" in rounds.on_key(impostor.key_record(0))
    with pytest.raises(InvalidRecord):
        rounds.on_metric(clear_metric(impostor, "c", 0.99), now=0.0)  # the impostor's metric
    with pytest.raises(InvalidRecord):
        rounds.on_metric(clear_metric(hosts["m-1"], "c", 0.5), now=0.0)  # one of the two is a fake: neither

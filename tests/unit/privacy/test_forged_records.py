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


def test_a_name_outside_the_models_replicas_cannot_join_its_rounds():
    hosts = group(3)
    rounds = book(hosts=hosts)
    sybil = SecureAggregation("m", "m-7", secagg.Identity.generate(), set(), 3, 3)
    other_model = SecureAggregation("n", "n-0", secagg.Identity.generate(), set(), 3, 3)
    assert "not one of model m's 3 replicas" in rounds.on_key(sybil.key_record(0))
    assert rounds.on_key(other_model.key_record(0)) is None  # a replica of its own model
    as_m = {**clear_metric(other_model, "bad", 0.99, size=10**6), "model": "m", "agent": "n-0"}
    for forged in (clear_metric(sybil, "bad", 0.99, size=10**6), other_model.sign_metric(as_m)):
        with pytest.raises(InvalidRecord, match="replicas"):
            rounds.on_metric(forged, now=0.0)
    out = rounds.on_metric(clear_metric(hosts["m-0"], "good", 0.8), now=0.0)
    assert out == []  # the round still waits for its own replicas


def test_a_round_no_trigger_started_takes_no_metric():
    hosts = group(3)
    rounds = book(hosts=hosts, triggered=("r1",))
    with pytest.raises(InvalidRecord, match="not started by a trigger"):
        rounds.on_metric(clear_metric(hosts["m-0"], "mine", 0.99, round_id="minted"), now=0.0)


def test_a_signed_metric_that_would_overflow_or_poison_the_masks_is_refused():
    hosts, rounds = _masked_round()
    poison = hosts["m-2"].sign_metric({**clear_metric(hosts["m-2"], "c", 0.6), "noise_std": 1e200})
    with pytest.raises(InvalidRecord, match="noise_std"):
        rounds.on_metric(poison, now=0.0)
    low_order = hosts["m-1"].sign_metric({**metric(hosts["m-1"], "r1", "shared", 100.0), "mask_key": bytes(32)})
    with pytest.raises(InvalidRecord, match="X25519"):
        rounds.on_metric(low_order, now=0.0)


def test_a_metric_signs_the_same_after_its_avro_round_trip():
    from schemas import codec

    hosts = group(3)
    rounds = book(hosts=hosts)
    signed = hosts["m-0"].sign_metric({**clear_metric(hosts["m-0"], "c", 0.6), "epsilon_spent": 1})  # an int
    _, decoded = codec().decode(codec().encode("TrialMetric", signed))
    assert isinstance(decoded["epsilon_spent"], float)
    rounds.authenticate("TrialMetric", decoded)


def test_the_aggregators_pins_survive_a_restart_so_a_later_key_cannot_replace_them(tmp_path):
    from streams.aggregator import PinStore

    hosts = group(3)
    path = tmp_path / "pins.json"
    before = book()
    store = PinStore(path, before)
    for h in hosts.values():
        store.pin(h.key_record(0))
    # the impostor's key is now the last record under "m-1" on the compacted hpo.keys: all a
    # restarted aggregator would read there
    impostor = SecureAggregation("m", "m-1", secagg.Identity.generate(), {"m-0", "m-2"}, 3, 3)
    after = book()
    PinStore(path, after).pin(impostor.key_record(1))
    with pytest.raises(InvalidRecord, match="m-1 not signed"):
        after.on_metric(clear_metric(impostor, "evil", 0.99, size=10**6), now=0.0)
    assert oct(path.stat().st_mode & 0o777) == "0o600"

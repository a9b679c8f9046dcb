"""A curious aggregator against secure aggregation (Bonawitz et al. 2017): every request it may
publish, run against the hosts' real code, and everything it can compute from the answers.

Each attack recovered a host's exact value from the pairwise-only masking this replaced (the
false dropout and the late host by the survivors' mask sums, two requests naming one peer each
by adding them up). Here the value stays behind its self-mask: the aggregator learns a host's
seed only when ``t`` hosts name it a survivor, and its pairwise key only when they name it
dropped, and every host answers one request per round.
"""

from __future__ import annotations

import pickle

import pytest

from fedrift.core import secagg
from fedrift.core.masking import ROUND_MEMORY, SecureAggregation
from tests.secagg_group import exchange, group, metric

ROUND, CFG, VALUE = "r1", "cfg-1", 173.0  # VALUE: the target's noised quality × slice size


def _request(survivors, dropped) -> dict:
    return {"round_id": ROUND, "model": "m", "time": 0, "survivors": sorted(survivors),
            "dropped_agents": sorted(dropped)}


def _published(hosts) -> dict[str, dict]:
    exchange(hosts, ROUND)
    return {h: metric(c, ROUND, CFG, VALUE if h == "m-3" else 50.0) for h, c in hosts.items()}


def _best_guess(target: dict, answers: list[dict], t: int) -> float:
    """What the aggregator makes of ``target``'s masked value with every share it was given:
    each mask it can rebuild is removed."""
    me = target["agent"]
    seeds = {s["share_index"]: s["seed_shares"][me] for s in answers if me in s["seed_shares"]}
    keys = {s["share_index"]: s["key_shares"][me] for s in answers if me in s["key_shares"]}
    y = target["masked_value"]
    if len(seeds) >= t:
        y -= secagg.self_mask(secagg.combine_seed(seeds, t), ROUND, CFG)
    if len(keys) >= t:
        key = secagg.combine_mask_key(keys, t)
        for peer_key, peer in target["peer_keys"]:
            secret = secagg.pair_secret(key, peer_key, "m", ROUND, target["agent"], peer)
            y -= secagg.pair_mask(secret, target["agent"], peer, ROUND, CFG)
    return secagg.decode(y)


def _with_peer_keys(published: dict[str, dict], target: str) -> dict:
    return {**published[target], "peer_keys": [(published[p]["mask_key"], p) for p in published[target]["masked_with"]]}


def test_naming_a_live_host_dropped_does_not_expose_it():
    hosts = group(4, threshold=3)
    published = _published(hosts)
    request = _request(["m-0", "m-1", "m-2"], ["m-3"])  # m-3 is alive: its value was published
    answers = [hosts[h].unmask(request) for h in ("m-0", "m-1", "m-2")]
    assert all(a is not None and "m-3" not in a["seed_shares"] for a in answers)
    assert hosts["m-3"].unmask(request) is None  # not named a survivor: it says nothing
    guess = _best_guess(_with_peer_keys(published, "m-3"), answers, 3)
    assert abs(guess - VALUE) > 1e6  # its pairwise masks are gone, its self-mask is not
    # a second request naming it a survivor would hand over its seed: every host refuses it
    assert all(hosts[h].unmask(_request(["m-1", "m-2", "m-3"], ["m-0"])) is None for h in hosts)


def test_two_requests_splitting_the_peers_are_refused_and_a_repeat_gets_the_same_answer():
    hosts = group(4, threshold=3)
    _published(hosts)
    first = hosts["m-0"].unmask(_request(["m-0", "m-1", "m-2"], ["m-3"]))
    assert first is not None
    assert hosts["m-0"].unmask(_request(["m-0", "m-1", "m-3"], ["m-2"])) is None
    assert hosts["m-0"].unmask(_request(["m-0", "m-1", "m-2"], ["m-3"])) == first  # redelivery is harmless


def test_a_late_host_stays_hidden_behind_its_self_mask():
    hosts = group(4, threshold=3)
    exchange(hosts, ROUND)
    early = {h: metric(hosts[h], ROUND, CFG, 50.0) for h in ("m-0", "m-1", "m-2")}
    request = _request(list(early), ["m-3"])
    answers = [hosts[h].unmask(request) for h in early]
    late = metric(hosts["m-3"], ROUND, CFG, VALUE)  # published after the survivors answered
    peer_keys = [(early[p]["mask_key"], p) for p in late["masked_with"]]
    assert abs(_best_guess({**late, "peer_keys": peer_keys}, answers, 3) - VALUE) > 1e6


def test_nobody_answers_below_the_threshold():
    """Default t = 3: with three hosts one dropout leaves two, and nobody answers."""
    hosts = group(3, threshold=3)
    _published(hosts)
    request = _request(["m-0", "m-1"], ["m-2"])
    assert all(hosts[h].unmask(request) is None for h in ("m-0", "m-1"))


@pytest.mark.parametrize(("survivors", "dropped", "round_id", "model"), [
    (["m-0", "m-1", "m-2", "x-9"], [], ROUND, "m"),  # a stranger
    (["m-0", "m-1", "m-2"], ["m-2"], ROUND, "m"),  # a host named both: its seed and key shares
    (["m-0", "m-0", "m-1", "m-2"], [], ROUND, "m"),  # a duplicate
    (["m-0", "m-1", "m-2"], ["m-3"], "never-joined", "m"),
    (["m-0", "m-1", "m-2"], ["m-3"], ROUND, "other-model"),
])
def test_malformed_first_requests_are_refused(survivors, dropped, round_id, model):
    """Each request is the first this host sees: only its own check can refuse it."""
    hosts = group(4, threshold=3)
    _published(hosts)
    request = {**_request(survivors, dropped), "round_id": round_id, "model": model}
    request["survivors"] = survivors  # unsorted, duplicates kept
    assert hosts["m-0"].unmask(request) is None
    assert "never-joined" not in hosts["m-0"].rounds  # a request creates no round


def test_a_host_left_out_of_the_survivors_publishes_no_masked_value():
    hosts = group(4, threshold=3)
    exchange(hosts, ROUND)
    request = _request(["m-0", "m-1", "m-2"], ["m-3"])
    assert hosts["m-3"].unmask(request) is None  # it had not masked yet: the request is remembered
    assert hosts["m-3"].mask(ROUND, {CFG: VALUE}) is None


@pytest.mark.parametrize(("n", "t", "late"), [(5, 3, 2), (3, 2, 1), (5, 3, 3)])
def test_a_host_with_too_few_peers_keys_does_not_mask(n, t, late):
    """With peer set P a host's value would come out of a request naming the group minus P as
    survivors and P as dropped, whenever t hosts lie outside P; it must not mask then."""
    hosts = group(n, threshold=t)
    names = sorted(hosts)
    keys = {h: hosts[h].join(ROUND) for h in names}
    for k in names[:-late]:  # the last ``late`` peers' round keys reach m-0 only after it masked
        hosts["m-0"].on_round_keys(keys[k])
    assert hosts["m-0"].mask(ROUND, {CFG: VALUE}) is None


def test_peers_turned_impostors_do_not_shrink_the_mask_below_safety():
    """A writer of hpo.keys publishes other identities under two peers' names after the join:
    the host stops masking with them, and with too few left it withholds its value."""
    hosts = group(5, threshold=3)
    exchange(hosts, ROUND)
    for victim in ("m-3", "m-4"):
        forged = SecureAggregation("m", victim, secagg.Identity.generate(), set(), 5, 3).key_record(0)
        assert hosts["m-0"].learn_key(forged) is not None
    assert hosts["m-0"].masking_peers(ROUND) == ["m-1", "m-2"]
    assert hosts["m-0"].mask(ROUND, {CFG: VALUE}) is None


def test_a_round_pushed_out_of_memory_is_never_joined_keyed_or_answered_again():
    hosts = group(4, threshold=3)
    keys = {h: hosts[h].join(ROUND) for h in hosts}  # kept: the compacted hpo.keys keeps them too
    for host in hosts.values():
        for k in keys.values():
            host.on_round_keys(k)
    for h in hosts:
        metric(hosts[h], ROUND, CFG, 50.0)
    first = _request(list(hosts), [])
    assert all(hosts[h].unmask(first) is not None for h in hosts)
    for k in range(ROUND_MEMORY + 5):  # later rounds (or replayed round keys) fill the memory
        later = hosts["m-1"].join(f"later-{k}")
        for h in ("m-0", "m-2", "m-3"):
            assert hosts[h].on_round_keys(later) is None
    assert all(ROUND in h.retired and ROUND not in h.rounds for h in hosts.values())
    for h in hosts.values():
        assert h.join(ROUND) is None
        for k in keys.values():  # validly signed replays of the round's keys
            h.on_round_keys(k)
        assert ROUND not in h.rounds
        assert h.unmask(_request(["m-0", "m-1", "m-2"], ["m-3"])) is None
    restarted = group(4, threshold=3)["m-0"]
    restarted.restore(pickle.loads(pickle.dumps(hosts["m-0"].memory())))
    assert restarted.join(ROUND) is None


def test_a_sum_over_fewer_than_t_hosts_cannot_be_unmasked():
    """n = 4, t = 3: m-3's keys reached m-0 and m-1 late (they masked with each other and m-2), and
    a configuration only m-0 and m-1 scored. Naming m-3 a survivor beside them, and m-2 dropped,
    would rebuild every mask of that configuration's two-host sum: they refuse."""
    hosts = group(4, threshold=3)
    keys = {h: hosts[h].join(ROUND) for h in hosts}
    for h in hosts:
        for k, rk in keys.items():
            if not (h in ("m-0", "m-1") and k == "m-3"):
                hosts[h].on_round_keys(rk)
    for h in ("m-0", "m-1"):
        assert metric(hosts[h], ROUND, "only-two", 100.0)["masked_with"] == sorted({"m-0", "m-1", "m-2"} - {h})
    request = _request(["m-0", "m-1", "m-3"], ["m-2"])
    assert hosts["m-0"].unmask(request) is None and hosts["m-1"].unmask(request) is None


def test_signed_fields_are_length_prefixed():
    from fedrift.core.signatures import fields as _fields

    assert _fields("ab", "c") != _fields("a", "bc")


def test_a_threshold_below_two_is_refused():
    with pytest.raises(ValueError, match="2 or more"):
        group(3, threshold=1)


def test_answers_survive_a_restart_and_round_secrets_never_reach_the_checkpoint():
    hosts = group(4, threshold=3)
    _published(hosts)
    host = hosts["m-0"]
    host.unmask(_request(["m-0", "m-1", "m-2"], ["m-3"]))
    memory = pickle.dumps(host.memory())  # as the checkpoint carries it
    restarted = group(4, threshold=3)["m-0"]
    restarted.restore(pickle.loads(memory))
    assert restarted.unmask(_request(["m-0", "m-1", "m-3"], ["m-2"])) is None
    assert restarted.join(ROUND) is None  # a round id is never joined twice
    fresh = group(3)["m-0"]
    fresh.join("r9")
    secrets = fresh.rounds["r9"].secrets
    assert secrets is not None and secrets.seed not in pickle.dumps(fresh.memory())

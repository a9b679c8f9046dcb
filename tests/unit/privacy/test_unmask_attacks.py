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

from fedrift.core import secagg
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


def test_requests_naming_strangers_or_a_host_twice_are_refused():
    hosts = group(4, threshold=3)
    _published(hosts)
    assert hosts["m-0"].unmask(_request(["m-0", "m-1", "m-2", "x-9"], [])) is None
    assert hosts["m-0"].unmask(_request(["m-0", "m-1", "m-2"], ["m-2"])) is None
    assert hosts["m-0"].unmask({**_request(["m-0", "m-1", "m-2"], []), "round_id": "never-joined"}) is None


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

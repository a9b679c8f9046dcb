"""Unmask requests from a curious aggregator, run against a host's secure-aggregation side.

The aggregator may publish any ``UnmaskRequest``. A host's answers, over every request for the
same share, must never cover all the peers it masked with: the masked share minus those masks is
its own value. Before this check had memory, two requests naming one peer each recovered it.
"""

from __future__ import annotations

import pickle

from agents.federated import FederatedRounds
from fedrift.core.aggregation import AgentKeys
from fedrift.core.fhpo import FhpoAgent, FhpoConfig, RoundOutcome, TrialResult
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger

ROUND, CFG, VALUE = "r1", "cfg-1", 173.0  # VALUE: host 0's noised quality × slice size


def _rounds(n: int = 3, min_survivors: int = 2) -> dict[str, FederatedRounds]:
    hosts = [f"linear-{i}" for i in range(n)]
    keys = {h: AgentKeys.generate() for h in hosts}
    out = {}
    for h in hosts:
        agent = FhpoAgent(FAMILIES["linear"], h, PrivacyLedger(10.0), FhpoConfig(min_survivors=min_survivors))
        r = FederatedRounds(agent, "linear", h, keys[h], b"ctx", set(hosts) - {h})
        for k in hosts:
            r.learn_key({"model": "linear", "host": k, "public_key": keys[k].public_bytes})
        out[h] = r
    return out


def _published_share(rounds: FederatedRounds) -> float:
    trial = TrialResult(ROUND, "linear", rounds.host_id, CFG, {}, VALUE / 250, 0.1, 250, 0.5, True, 0.01)
    [metric] = rounds.metrics({"round_id": ROUND}, RoundOutcome("ok", [trial]))
    return metric.value["masked_shares"][0]


def _request(*dropped: str) -> dict:
    return {"round_id": ROUND, "model": "linear", "dropped": {CFG: list(dropped)}}


def _recovered(share: float, answers: list) -> float:
    return share - sum(o.value["share"] for o in answers)


def test_two_requests_naming_one_peer_each_do_not_expose_a_host():
    host = _rounds()["linear-0"]
    share = _published_share(host)
    first = host.unmask(_request("linear-1"))
    second = host.unmask(_request("linear-2"))
    assert len(first) == 1 and second == []  # the second answer would complete the set
    assert abs(_recovered(share, first + second) - VALUE) > 1.0


def test_the_refusal_survives_a_restart_of_the_host():
    host = _rounds()["linear-0"]
    _published_share(host)
    host.unmask(_request("linear-1"))
    restarted = _rounds()["linear-0"]
    restarted.keys = host.keys
    restarted.restore(pickle.loads(pickle.dumps(host.memory())))  # as the checkpoint carries it
    assert restarted.unmask(_request("linear-2")) == []


def test_a_request_naming_every_peer_at_once_is_refused():
    host = _rounds()["linear-0"]
    _published_share(host)
    assert host.unmask(_request("linear-1", "linear-2")) == []


def test_a_round_the_host_never_masked_in_is_refused():
    assert _rounds()["linear-0"].unmask(_request("linear-1")) == []


def test_no_host_helps_unmask_below_the_minimum_group():
    """Default t = 3: with three maskers one dropout leaves two, and nobody answers; with four,
    the three survivors do."""
    three = _rounds(3, min_survivors=FhpoConfig().min_survivors)["linear-0"]
    _published_share(three)
    assert three.unmask(_request("linear-2")) == []
    four = _rounds(4, min_survivors=FhpoConfig().min_survivors)["linear-0"]
    _published_share(four)
    assert len(four.unmask(_request("linear-3"))) == 1

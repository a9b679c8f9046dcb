"""Key substitution on ``hpo.keys``: whoever can write the topic publishes their own key under a
peer's name, so a host would mask with a secret the attacker shares and its share could be
unmasked. Hosts pin each peer's key the first time they see it (also across restarts) and stop
masking with a peer whose key changes."""

from __future__ import annotations

import pickle

from agents.federated import FederatedRounds
from fedrift.core.aggregation import AgentKeys
from fedrift.core.fhpo import FhpoAgent, RoundOutcome, TrialResult
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger

HOSTS = ("linear-0", "linear-1", "linear-2")


def _host(keys: dict[str, AgentKeys]) -> FederatedRounds:
    agent = FhpoAgent(FAMILIES["linear"], "linear-0", PrivacyLedger(10.0))
    return FederatedRounds(agent, "linear", "linear-0", keys["linear-0"], b"ctx", set(HOSTS) - {"linear-0"})


def _key(host: str, k: AgentKeys) -> dict:
    return {"model": "linear", "host": host, "public_key": k.public_bytes}


def _masked_with(host: FederatedRounds) -> list[str]:
    trial = TrialResult("r1", "linear", "linear-0", "cfg", {}, 0.7, 0.1, 250, 0.5, True, 0.01)
    [metric] = host.metrics({"round_id": "r1"}, RoundOutcome("ok", [trial]))
    return metric.value["masked_with"]


def test_a_substituted_key_is_refused_and_the_peer_left_out_of_masking():
    keys = {h: AgentKeys.generate() for h in HOSTS}
    host = _host(keys)
    assert all(host.learn_key(_key(h, keys[h])) for h in HOSTS)
    attacker = AgentKeys.generate()
    assert host.learn_key(_key("linear-1", attacker)) is False
    assert host.peer_keys["linear-1"] == keys["linear-1"].public_bytes
    assert _masked_with(host) == ["linear-2"]  # linear-1 lists linear-0: the lists disagree, nothing is summed
    assert host.learn_key(_key("linear-2", keys["linear-2"]))  # the same key again is fine


def test_the_pin_survives_a_restart():
    keys = {h: AgentKeys.generate() for h in HOSTS}
    host = _host(keys)
    for h in HOSTS:
        host.learn_key(_key(h, keys[h]))
    restarted = _host(keys)
    restarted.restore(pickle.loads(pickle.dumps(host.memory())))  # as the checkpoint carries it
    assert restarted.learn_key(_key("linear-1", AgentKeys.generate())) is False
    assert _masked_with(restarted) == ["linear-2"]

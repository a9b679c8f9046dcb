"""Key substitution on ``hpo.keys``: whoever can write the topic publishes keys under a peer's
name, so hosts would seal their shares for the attacker. Every key and round key must be signed
by the Ed25519 key pinned for that peer at first sight (also across restarts)."""

from __future__ import annotations

import pickle

from fedrift.core import secagg
from fedrift.core.masking import SecureAggregation
from tests.secagg_group import group


def _impostor(name: str) -> SecureAggregation:
    return SecureAggregation("m", name, secagg.Identity.generate(), {"m-0", "m-2"}, 3, 3)


def test_a_substituted_key_is_refused_after_first_contact():
    hosts = group(3)
    host = hosts["m-0"]
    assert "other keys" in host.learn_key(_impostor("m-1").key_record(0))
    assert host.pinned.keys["m-1"][0] == hosts["m-1"].identity.verify_key
    assert host.masking_peers("r1") == [] and host.join("r1") is not None
    assert host.learn_key(hosts["m-2"].key_record(0)) is None  # the same keys again are fine


def test_a_key_not_signed_by_the_key_it_names_is_refused_even_at_first_contact():
    fresh = SecureAggregation("m", "m-0", secagg.Identity.generate(), {"m-1", "m-2"}, 3, 3)
    forged = {**_impostor("m-1").key_record(0), "public_key": bytes(32)}  # signature no longer matches
    assert "not signed" in fresh.learn_key(forged)
    assert "m-1" not in fresh.pinned.keys


def test_round_keys_signed_by_anyone_else_are_refused():
    hosts = group(3)
    impostor = _impostor("m-1")
    impostor.learn_key(hosts["m-0"].key_record(0))
    forged = impostor.join("r1")  # shares sealed for m-0 under the impostor's keys
    assert "not signed by its pinned key" in hosts["m-0"].on_round_keys(forged)
    genuine = hosts["m-1"].join("r1")
    tampered = {**genuine, "mask_key": impostor.rounds["r1"].secrets.mask_public}
    assert "not signed" in hosts["m-0"].on_round_keys(tampered)
    assert hosts["m-0"].on_round_keys(genuine) is None


def test_the_pin_survives_a_restart():
    hosts = group(3)
    restarted = group(3)["m-0"]
    restarted.identity = hosts["m-0"].identity
    restarted.restore(pickle.loads(pickle.dumps(hosts["m-0"].memory())))
    assert restarted.learn_key(_impostor("m-1").key_record(0)) is not None
    assert restarted.learn_key(hosts["m-1"].key_record(0)) is None

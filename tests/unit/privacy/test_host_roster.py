"""Identity before first contact: a host principal publishes a key under a peer's name before the
peer's own. Pinned at first sight, the impostor is trusted and the peer shut out; with the host
roster (``fedrift.roster``) only the roster's keys are ever trusted."""

from __future__ import annotations

import json
import pickle

import pytest

from fedrift.config import Settings
from fedrift.core import secagg
from fedrift.core.aggregator import RoundBook
from fedrift.core.masking import SecureAggregation
from fedrift.roster import RosterError, load_roster, write_roster
from schemas import InvalidRecord
from tests.secagg_group import MODEL, clear_metric, exchange

NAMES = [f"{MODEL}-{r}" for r in range(3)]


def _hosts(roster: bool) -> tuple[dict[str, SecureAggregation], dict]:
    ids = {h: secagg.Identity.generate() for h in NAMES}
    listed = {h: (i.verify_key, i.exchange_key) for h, i in ids.items()} if roster else None
    hosts = {h: SecureAggregation(MODEL, h, ids[h], set(NAMES) - {h}, 3, 3, listed) for h in NAMES}
    return hosts, listed


def _impostor_key(name: str = "m-1") -> dict:
    return SecureAggregation(MODEL, name, secagg.Identity.generate(), set(), 3, 3).key_record(0)


def _meet(hosts: dict[str, SecureAggregation], first: dict) -> None:
    """Every host reads ``first``, then every host's own key (the compacted topic's order)."""
    for host in hosts.values():
        host.learn_key(first)
        for other in hosts.values():
            host.learn_key(other.key_record(0))


def test_without_a_roster_an_impostor_first_shuts_the_peer_out():
    hosts, _ = _hosts(roster=False)
    _meet(hosts, _impostor_key())
    assert hosts["m-0"].pinned.trusted("m-1") is None  # the attack works: m-1 is masked with by nobody


def test_with_a_roster_the_impostor_is_refused_and_the_round_sums_every_host():
    hosts, _ = _hosts(roster=True)
    assert "roster" in hosts["m-0"].learn_key(_impostor_key())
    _meet(hosts, _impostor_key())
    assert all(h.pinned.trusted("m-1") == (hosts["m-1"].identity.verify_key, hosts["m-1"].identity.exchange_key)
               for h in hosts.values() if h.host != "m-1")
    exchange(hosts, "r1")
    assert all(h.masking_peers("r1") == sorted(set(NAMES) - {h.host}) for h in hosts.values())


def test_the_aggregator_with_a_roster_refuses_the_impostor_and_its_metrics():
    hosts, listed = _hosts(roster=True)
    book = RoundBook(replicas=3, expected_per_agent=1, timeout_s=10, threshold=3, roster=listed)
    book.on_trigger({"round_id": "r1"})
    assert "roster" in book.on_key(_impostor_key())
    impostor = SecureAggregation(MODEL, "m-1", secagg.Identity.generate(), {"m-0", "m-2"}, 3, 3)
    with pytest.raises(InvalidRecord, match="not signed by its pinned key"):
        book.on_metric(clear_metric(impostor, "c", 0.9), 0.0)
    assert book.on_metric(clear_metric(hosts["m-1"], "c", 0.9), 0.0) == []  # the listed m-1's counts


def test_a_restart_keeps_the_roster_over_what_was_pinned_before():
    hosts, _ = _hosts(roster=False)
    _meet(hosts, _impostor_key())
    stale = pickle.loads(pickle.dumps(hosts["m-0"].memory()))  # the impostor pinned, m-1 conflicted
    ids = {h: hosts[h].identity for h in NAMES}
    roster = {h: (i.verify_key, i.exchange_key) for h, i in ids.items()}
    restarted = SecureAggregation(MODEL, "m-0", ids["m-0"], {"m-1", "m-2"}, 3, 3, roster)
    restarted.restore(stale)
    assert restarted.pinned.trusted("m-1") == roster["m-1"]
    book = RoundBook(replicas=3, expected_per_agent=1, timeout_s=10, threshold=3, roster=roster)
    book.keys.restore({"keys": {"m-1": [bytes(32).hex(), bytes(32).hex()]}, "conflicted": ["m-2"]})
    assert book.keys.trusted("m-1") == roster["m-1"] and book.keys.trusted("m-2") == roster["m-2"]


def test_write_roster_names_the_identities_hosts_load(tmp_path):
    settings = Settings(home=tmp_path, models=("pa", "gnb"), replicas=2)
    path = write_roster(settings, tmp_path / "roster.json")
    assert load_roster(path) == load_roster(write_roster(settings, tmp_path / "again.json"))  # same identities
    assert sorted(load_roster(path)) == ["gnb-0", "gnb-1", "pa-0", "pa-1"]


@pytest.mark.parametrize("text, says", [
    ("not json", "Expecting value"),
    ("[]", "not a JSON object"),
    (json.dumps({"pa-0": {"signing_key": "zz", "public_key": "00"}}), "needs hex"),
    (json.dumps({"pa-0": {"signing_key": "00" * 31, "public_key": "00" * 32}}), "32 bytes"),
])
def test_a_bad_roster_is_refused_saying_why(tmp_path, text, says):
    path = tmp_path / "roster.json"
    path.write_text(text)
    with pytest.raises(RosterError, match=says):
        load_roster(path)


def test_a_host_starts_only_with_the_identity_its_roster_names(tmp_path):
    """A host that would make itself a fresh identity (wrong FEDRIFT_IDENTITY_DIR, a lost file)
    runs untrusted by every peer: with a roster it refuses to start, naming the file."""
    from fedrift.roster import identity_path, own_identity

    settings = Settings(home=tmp_path / "site", models=(MODEL,), replicas=3)
    roster = load_roster(write_roster(settings, tmp_path / "roster.json"))
    assert own_identity(settings, "m-0", roster).verify_key == roster["m-0"][0]
    elsewhere = Settings(home=tmp_path / "other", models=(MODEL,), replicas=3)
    with pytest.raises(RosterError, match="no identity at"):
        own_identity(elsewhere, "m-0", roster)
    assert not identity_path(elsewhere, "m-0").exists()  # none made up
    own_identity(elsewhere, "m-0", None)  # without a roster: created at first start
    with pytest.raises(RosterError, match="not the pair"):
        own_identity(elsewhere, "m-0", roster)
    with pytest.raises(RosterError, match="not in it"):
        own_identity(settings, "m-7", roster)

"""The aggregator against hosts that crash after answering its first unmask request and before
their next checkpoint: restarted from the older checkpoint (and reading control records from
"now", so never seeing that request again) they must still refuse a second, different request
of the round. Without the journal the second request here hands the aggregator the seed shares
of a live host whose key shares the first one gave it: its exact value."""

from __future__ import annotations

import pickle

from agents.federated import FederatedRounds
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger
from tests.secagg_group import group
from tests.unit.privacy.test_unmask_attacks import VALUE, _best_guess, _published, _request, _with_peer_keys


def _rounds(secure, journal) -> FederatedRounds:
    agent = FhpoAgent(FAMILIES["linear"], secure.host, PrivacyLedger(10.0), FhpoConfig())
    return FederatedRounds(agent, "m", secure.host, secure, answers_path=journal)


def _attack(tmp_path, journaled: bool) -> float:
    """Hosts m-0..m-2 answer a request naming live m-3 dropped, crash before their checkpoint,
    come back from it, and get a request naming m-3 a survivor; the aggregator's best guess of
    m-3's value from all the answers."""
    hosts = group(4, threshold=3)
    published = _published(hosts)
    answerers = ("m-0", "m-1", "m-2")
    journals = {h: tmp_path / f"{h}.answers" if journaled else None for h in answerers}
    checkpoints = {h: pickle.dumps(hosts[h].memory()) for h in answerers}  # before the request
    first = _request(answerers, ["m-3"])
    answers = [o.value for h in answerers for o in _rounds(hosts[h], journals[h]).unmask(first)]
    assert len(answers) == 3
    second = _request(["m-0", "m-1", "m-2", "m-3"], [])
    for h in answerers:
        restarted = _rounds(group(4, threshold=3)[h], journals[h])  # a new process, the same disk
        restarted.restore(pickle.loads(checkpoints[h]))
        answers += [o.value for o in restarted.unmask(second)]
    return _best_guess(_with_peer_keys(published, "m-3"), answers, 3)


def test_a_host_restarted_from_an_older_checkpoint_refuses_a_second_request(tmp_path):
    assert abs(_attack(tmp_path, journaled=True) - VALUE) > 1e6  # its self-mask stays on


def test_without_the_journal_the_second_request_exposes_a_live_host(tmp_path):
    assert abs(_attack(tmp_path, journaled=False) - VALUE) < 1e-6  # the attack, when nothing journals


def test_an_unreadable_journal_fails_closed(tmp_path):
    """A torn or edited journal neither crashes the host nor reopens the hole: every round it
    restored is answered no more."""
    hosts = group(4, threshold=3)
    _published(hosts)
    checkpoint = pickle.dumps(hosts["m-0"].memory())
    journal = tmp_path / "m-0.answers"
    for junk in (b'{"r1": [["m-0"', b"[]", b'{"r1": [["m-0"]]}'):
        journal.write_bytes(junk)
        restarted = _rounds(group(4, threshold=3)["m-0"], journal)
        restarted.restore(pickle.loads(checkpoint))
        assert restarted.unmask(_request(["m-0", "m-1", "m-2"], ["m-3"])) == [], junk

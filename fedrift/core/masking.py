"""A host's side of secure aggregation: its signed keys, its round secrets and the shares it holds
for its peers, the masks on its values, and its one answer per round to the aggregator.

The rules that keep a host's value hidden from a curious aggregator (``fedrift.core.secagg``):

* every key it accepts is signed by the peer's Ed25519 key, pinned at first sight (and across
  restarts: ``memory``); a different key later published under that name is refused; what it
  publishes itself (round keys, metrics, unmask answers) it signs (``fedrift.core.signatures``);
* a round id is joined once: its secrets are fresh, never reused, and never written to disk; a
  round pushed out of memory is retired, never joined, keyed or answered again;
* it masks only with enough peers that no ``threshold`` hosts outside them exist
  (``enough_peers``): otherwise the aggregator could name those survivors and the peers dropped;
* it answers the *first* unmask request of a round only, remembered whether answered or not
  (every host reads the same first one: requests travel on one partition; the host journals it
  before its answer leaves: ``answered``), never one naming
  fewer than ``threshold`` survivors or a survivor it did not mask with, and reveals per peer
  either the seed share (a survivor) or the key share (dropped), never both.

>>> ids = {h: secagg.Identity.generate() for h in ("m-0", "m-1", "m-2")}
>>> hosts = {h: SecureAggregation("m", h, ids[h], set(ids) - {h}, replicas=3, threshold=3) for h in ids}
>>> for h, c in hosts.items():
...     for k in ids:
...         assert c.learn_key(hosts[k].key_record(0)) is None
>>> keys = [hosts[h].join("r1") for h in ids]
>>> for h, c in hosts.items():
...     for k in keys:
...         assert k is None or c.on_round_keys(k) is None
>>> sorted(hosts["m-0"].masking_peers("r1"))
['m-1', 'm-2']
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from fedrift.core import secagg
from fedrift.core.aggregation import replica_index
from fedrift.core.signatures import PinnedKeys, key_message, metric_message, round_keys_message, share_message
from schemas.records import AgentKey, RoundKeys, TrialMetric, UnmaskRequest, UnmaskShare

log = logging.getLogger(__name__)
ROUND_MEMORY = 100  # rounds whose shares and answers are kept (for a late unmask request)


@dataclass
class RoundState:
    """What a host knows of one round. ``secrets`` live only until its values are masked."""

    secrets: secagg.RoundSecrets | None = None
    joined: bool = False
    own_share: bytes = b""  # this host's share of its own secrets
    shares: dict[str, bytes] = field(default_factory=dict)  # peer -> this host's share of the peer's secrets
    mask_keys: dict[str, bytes] = field(default_factory=dict)  # peer -> the peer's round mask key
    masked_with: list[str] | None = None  # set once its masked values are out
    answer: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # the (survivors, dropped) it answered


class SecureAggregation:
    def __init__(self, model: str, host: str, identity: secagg.Identity, peers: set[str], replicas: int,
                 threshold: int, roster: dict[str, tuple[bytes, bytes]] | None = None) -> None:
        if threshold < 2:
            raise ValueError(f"the secure-aggregation threshold must be 2 or more, not {threshold}")
        self.model, self.host, self.identity, self.peers = model, host, identity, set(peers)
        self.replicas, self.threshold = replicas, threshold
        # peers' (verify key, exchange key); a conflicted peer is masked with by nobody
        self.pinned = PinnedKeys(roster)
        self.rounds: OrderedDict[str, RoundState] = OrderedDict()
        self.retired: set[str] = set()  # rounds pushed out of ``rounds``: never joined, keyed or answered again

    @property
    def enabled(self) -> bool:
        """False for a group smaller than the threshold: nothing to hide behind, values go in the clear."""
        return self.replicas >= self.threshold

    @property
    def noise_shares(self) -> int:
        """Into how many hosts' shares the DP noise of a masked value may be split: ``threshold``
        − 1, so that the sum of any ``threshold`` − 1 survivors carries it whole. Unmasking needs
        ``threshold`` survivors, so a sum with one of them taken out (by a host that subtracts
        its own value, or by the aggregator colluding with one host) is still the full Laplace
        mechanism for the others. 1 (full local noise) when masking is off."""
        return self.threshold - 1 if self.enabled else 1

    # -- keys ------------------------------------------------------------------------------------
    def key_record(self, now_ms: int) -> AgentKey:
        ident = self.identity
        return {"host": self.host, "model": self.model, "public_key": ident.exchange_key, "created_ms": now_ms,
                "signing_key": ident.verify_key,
                "signature": ident.sign(key_message(self.model, self.host, ident.exchange_key, ident.verify_key))}

    def learn_key(self, value: AgentKey) -> str | None:
        """Pin a peer's keys at first sight; the reason a key is refused, or None."""
        if value["model"] != self.model or value["host"] not in self.peers:
            return None
        return self.pinned.learn(value)

    def _trusted(self, peer: str) -> tuple[bytes, bytes] | None:
        return self.pinned.trusted(peer)

    def sign_metric(self, metric: TrialMetric) -> TrialMetric:
        """The metric with this host's signature, so no other host principal can write it."""
        return {**metric, "signature": self.identity.sign(metric_message(metric))}

    def _round(self, round_id: str) -> RoundState | None:
        """The round's state, created on first use; None for a retired round."""
        if round_id in self.retired:
            return None
        if round_id not in self.rounds:
            self.rounds[round_id] = RoundState()
            while len(self.rounds) > ROUND_MEMORY:
                self.retired.add(self.rounds.popitem(last=False)[0])
        return self.rounds[round_id]

    # -- a round ---------------------------------------------------------------------------------
    def join(self, round_id: str) -> RoundKeys | None:
        """Fresh secrets for ``round_id``, their shares sealed for each trusted peer (None when the
        round was joined before, e.g. by this host before a restart, or masking is off)."""
        st = self._round(round_id)
        if st is None or st.joined or not self.enabled:
            return None
        st.joined, st.secrets = True, secagg.RoundSecrets.fresh()
        shares = st.secrets.split(self.replicas, self.threshold)
        st.own_share = shares[replica_index(self.host)]
        sealed = {}
        for peer in sorted(self.peers):
            trusted = self._trusted(peer)
            if trusted is not None:
                sealed[peer] = self.identity.seal(shares[replica_index(peer)], trusted[1], self.host, peer, round_id)
        record: RoundKeys = {"round_id": round_id, "model": self.model, "agent": self.host,
                             "mask_key": st.secrets.mask_public, "shares": sealed, "signature": b""}
        record["signature"] = self.identity.sign(round_keys_message(record))
        return record

    def on_round_keys(self, rk: RoundKeys) -> str | None:
        """Keep a peer's round mask key and this host's share of its secrets; the reason a record
        is refused, or None. The first keys of a peer for a round are the ones kept."""
        peer = rk["agent"]
        if rk["model"] != self.model or peer not in self.peers:
            return None
        trusted = self._trusted(peer)
        if trusted is None or not secagg.verify(trusted[0], rk["signature"], round_keys_message(rk)):
            return f"round keys of {peer} for {rk['round_id']} are not signed by its pinned key"
        st = self._round(rk["round_id"])
        if st is None:
            return None  # a retired round: whatever comes for it now is a replay
        if peer in st.mask_keys:
            return None if st.mask_keys[peer] == rk["mask_key"] else f"{peer} sent other keys for {rk['round_id']}"
        if st.masked_with is not None or self.host not in rk["shares"]:
            return None  # too late for this host's masks, or not meant for it
        share = self.identity.open(rk["shares"][self.host], trusted[1], self.host, peer, rk["round_id"])
        if share is None or len(share) != secagg.SHARE_BYTES or len(rk["mask_key"]) != 32:
            return f"{peer}'s share for {rk['round_id']} does not open for {self.host}"
        st.shares[peer], st.mask_keys[peer] = share, rk["mask_key"]
        return None

    def masking_peers(self, round_id: str) -> list[str]:
        st = self.rounds.get(round_id)
        return [] if st is None else sorted(p for p in st.mask_keys if self._trusted(p) is not None)

    def enough_peers(self, n_peers: int) -> bool:
        """Whether masking with ``n_peers`` peers hides this host's value. The aggregator could
        name the group minus those peers as survivors (rebuilding this host's seed) and the peers
        as dropped (rebuilding every pairwise mask): that takes ``threshold`` hosts outside the
        peers, so there must be fewer; and at least ``threshold`` hosts must hold the masks.

        >>> c = SecureAggregation("m", "m-0", secagg.Identity.generate(), {"m-1", "m-2", "m-3", "m-4"}, 5, 3)
        >>> [c.enough_peers(k) for k in range(5)]
        [False, False, False, True, True]
        """
        return n_peers >= self.threshold - 1 and self.replicas - n_peers < self.threshold

    def mask(self, round_id: str, values: dict[str, float]) -> tuple[dict[str, int], list[str], bytes] | None:
        """Each config's value masked, the peers masked with and this round's mask key; None when
        too few peers' round keys arrived for the masks to hide it (``enough_peers``): the values
        must not leave then. The round's secrets are forgotten afterwards: only the peers'
        shares can rebuild them."""
        st = self.rounds.get(round_id)
        peers = self.masking_peers(round_id)
        if st is None or st.secrets is None or not self.enough_peers(len(peers)):
            return None
        if st.answer is not None and self.host not in st.answer[0]:
            return None  # the survivors were named without this host: its value would be refused
        secrets = st.secrets
        pair = {p: secagg.pair_secret(secrets.mask_private, st.mask_keys[p], self.model, round_id, self.host, p)
                for p in peers}
        out = {}
        for cid, value in values.items():
            y = secagg.encode(value) + secagg.self_mask(secrets.seed, round_id, cid)
            y += sum(secagg.pair_mask(pair[p], self.host, p, round_id, cid) for p in peers)
            out[cid] = y % secagg.MODULUS
        st.secrets, st.masked_with = None, peers
        return out, peers, secrets.mask_public

    def unmask(self, request: UnmaskRequest) -> UnmaskShare | None:
        """This host's shares for the round's first unmask request (the same answer again for a
        repeat of it); None for any other request. The first request is remembered whether or
        not this host could answer it, so a later one naming it otherwise gets nothing."""
        st = self.rounds.get(request["round_id"])
        survivors, dropped = tuple(sorted(request["survivors"])), tuple(sorted(request["dropped_agents"]))
        if st is not None and st.answer is None and request["model"] == self.model:
            st.answer = (survivors, dropped)
        if st is None:
            log.warning("host %s refuses to unmask %s: it holds nothing of this round", self.host, request["round_id"])
            return None
        refused = self._refusal(st, request["model"], survivors, dropped)
        if refused:
            log.warning("host %s refuses to unmask %s: %s", self.host, request["round_id"], refused)
            return None
        mine = {**st.shares, self.host: st.own_share}
        answer: UnmaskShare = {"round_id": request["round_id"], "model": self.model, "agent": self.host,
                               "share_index": replica_index(self.host),
                               "seed_shares": {a: secagg.seed_share(mine[a]) for a in survivors if a in mine},
                               "key_shares": {a: secagg.key_share(mine[a]) for a in dropped if a in mine},
                               "signature": b""}
        answer["signature"] = self.identity.sign(share_message(answer))
        return answer

    def _refusal(self, st: RoundState, model: str, survivors: tuple[str, ...], dropped: tuple[str, ...]) -> str:
        if model != self.model:
            return f"it is for model {model}"
        if st.answer != (survivors, dropped):
            return "another request of this round came first"
        if st.masked_with is None:
            return "it published no masked value there"
        if self.host not in survivors or set(survivors) & set(dropped) or len(set(survivors)) != len(survivors):
            return "it is not named a survivor, or a host is named both"
        if len(set(survivors)) < self.threshold:
            return f"{len(set(survivors))} survivor(s), fewer than {self.threshold}"
        if not set(survivors) | set(dropped) <= self.peers | {self.host}:
            return "it names hosts outside the group"
        if not set(survivors) - {self.host} <= set(st.masked_with):
            # a survivor outside this host's masks shares no pairwise mask with it: seeds rebuilt
            # with such survivors could leave a sum over fewer than ``threshold`` hosts' values
            return "it names survivors this host did not mask with"
        return ""

    # -- restarts --------------------------------------------------------------------------------
    def memory(self) -> dict:
        """What must survive a restart (never a round's own secrets)."""
        rounds = {r: RoundState(None, st.joined, st.own_share, dict(st.shares), dict(st.mask_keys),
                                st.masked_with, st.answer) for r, st in self.rounds.items()}
        return {"identities": dict(self.pinned.keys), "conflicted": set(self.pinned.conflicted), "rounds": rounds,
                "retired": set(self.retired)}

    def answered(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Each round's first unmask request, (survivors, dropped), for the rounds in memory: what
        the host journals durably before its answer leaves (``agents.federated``), since a
        restart from an older checkpoint would not know it and would answer a second request."""
        return {r: st.answer for r, st in self.rounds.items() if st.answer is not None}

    def remember_answered(self, answered: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
        """Take back the first requests of ``answered`` (the journal) after a restart."""
        for round_id, (survivors, dropped) in answered.items():
            st = self.rounds.get(round_id)
            if st is not None and st.answer is None:
                st.answer = (tuple(survivors), tuple(dropped))

    def refuse_unanswered(self) -> None:
        """Treat every round in memory as answered already (no request can match): where the
        journal of first requests is lost, a second request must not get an answer either."""
        for st in self.rounds.values():
            if st.answer is None:
                st.answer = ((), ())

    def restore(self, memory: dict | None) -> None:
        if memory and "identities" in memory:
            if self.pinned.roster is None:  # with a roster, its pairs stand whatever was pinned
                self.pinned.keys = dict(memory["identities"])
                self.pinned.conflicted = set(memory["conflicted"])
            self.rounds = OrderedDict(memory["rounds"])
            self.retired = set(memory.get("retired", ()))

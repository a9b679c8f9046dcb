"""Who wrote a secure-aggregation record: every host signs what it publishes (its keys, its round
keys, its metrics, its unmask answers) with its Ed25519 key, and every reader pins a host's keys at
first sight from ``hpo.keys``. Kafka's ACLs let any host principal write ``hpo.keys`` and
``hpo.metrics`` (they cannot tell replicas apart); the signatures tell the hosts apart, so one
host cannot forge another's metric or answer and spoil a round's sum.

Each message is its record kind and fields, length-prefixed, so no two different records sign as
the same bytes; numbers by their value (a float as its 8 IEEE bytes, an int as its digits), so a
record signs the same before and after its Avro round trip.

>>> from fedrift.core.secagg import Identity
>>> ident = Identity.generate()
>>> key = {"host": "m-0", "model": "m", "public_key": ident.exchange_key, "signing_key": ident.verify_key,
...        "created_ms": 0, "signature": ident.sign(key_message("m", "m-0", ident.exchange_key, ident.verify_key))}
>>> pinned = PinnedKeys()
>>> pinned.learn(key) is None
True
>>> share = {"round_id": "r", "model": "m", "agent": "m-0", "share_index": 1, "seed_shares": {}, "key_shares": {}}
>>> pinned.signed_by("m-0", ident.sign(share_message(share)), share_message(share))
True
>>> pinned.signed_by("m-0", Identity.generate().sign(share_message(share)), share_message(share))
False
"""

from __future__ import annotations

import logging
import struct

from fedrift.core import secagg
from schemas.records import AgentKey, RoundKeys, TrialMetric, UnmaskShare

log = logging.getLogger(__name__)


def fields(*parts: bytes | str) -> bytes:
    """Length-prefixed fields: no two different field lists sign as the same bytes."""
    raw = [p.encode() if isinstance(p, str) else p for p in parts]
    return b"".join(len(p).to_bytes(4, "big") + p for p in raw)


def key_message(model: str, host: str, public_key: bytes, signing_key: bytes) -> bytes:
    return fields("fedrift-agent-key", model, host, public_key, signing_key)


def round_keys_message(rk: RoundKeys) -> bytes:
    shares = [x for p in sorted(rk["shares"]) for x in (p, rk["shares"][p])]
    return fields("fedrift-round-keys", rk["model"], rk["round_id"], rk["agent"], rk["mask_key"], *shares)


def _real(x: float) -> bytes:
    return struct.pack(">d", float(x))


def _whole(x: int) -> str:
    return str(int(x))


def metric_message(m: TrialMetric) -> bytes:
    """Every field of a TrialMetric but its signature."""
    masked = "" if m["masked_value"] is None else _whole(m["masked_value"])
    return fields("fedrift-trial-metric", m["model"], m["round_id"], m["agent"], m["config_id"], m["config_json"],
                  _real(m["noised_quality"]), _real(m["noised_latency_ms"]), _whole(m["slice_size"]),
                  _real(m["epsilon_spent"]), masked, *m["masked_with"], m["mask_key"], _real(m["noise_std"]))


def share_message(s: UnmaskShare) -> bytes:
    seeds = [x for a in sorted(s["seed_shares"]) for x in (a, s["seed_shares"][a])]
    keys = [x for a in sorted(s["key_shares"]) for x in (a, s["key_shares"][a])]
    return fields("fedrift-unmask-share", s["model"], s["round_id"], s["agent"], _whole(s["share_index"]),
                  str(len(seeds)), *seeds, *keys)


class PinnedKeys:
    """Hosts' (verify key, exchange key) pairs. An AgentKey must be signed by the signing key it
    names. Without a ``roster`` a host's pair is pinned at first sight; a different pair published
    later under a pinned name is refused, and the host is no longer trusted at all (one of the two
    pairs is an impostor's). With a roster (the operator's list of every host's pair, handed to
    each party out of band: ``fedrift.roster``) only the roster's pair of a host is ever trusted:
    an impostor's key is refused and changes nothing, before or after the host's own."""

    def __init__(self, roster: dict[str, tuple[bytes, bytes]] | None = None) -> None:
        self.roster = None if roster is None else dict(roster)
        self.keys: dict[str, tuple[bytes, bytes]] = dict(self.roster or {})
        self.conflicted: set[str] = set()

    def learn(self, value: AgentKey) -> str | None:
        """Pin the key; the reason it is refused, or None."""
        host = value["host"]
        message = key_message(value["model"], host, value["public_key"], value["signing_key"])
        if not secagg.verify(value["signing_key"], value["signature"], message):
            return f"the key of {host} is not signed by the signing key it names"
        pair = (value["signing_key"], value["public_key"])
        if self.roster is not None:
            if self.roster.get(host) != pair:
                return f"the key of {host} is not the one the host roster names"
            return None
        if self.keys.setdefault(host, pair) != pair:
            if host not in self.conflicted:
                log.warning("%s published other keys than the ones pinned; no longer trusted", host)
            self.conflicted.add(host)
            return f"{host} published other keys than the ones pinned here"
        return None

    def trusted(self, host: str) -> tuple[bytes, bytes] | None:
        return None if host in self.conflicted else self.keys.get(host)

    def memory(self) -> dict:
        """What a restart must keep, as JSON (hex keys)."""
        return {"keys": {h: [v.hex(), x.hex()] for h, (v, x) in sorted(self.keys.items())},
                "conflicted": sorted(self.conflicted)}

    def restore(self, memory: dict) -> None:
        """Back to what ``memory()`` kept; with a roster, the roster's pairs stand whatever was kept."""
        if self.roster is not None:
            return
        self.keys = {h: (bytes.fromhex(v), bytes.fromhex(x)) for h, (v, x) in memory["keys"].items()}
        self.conflicted = set(memory["conflicted"])

    def signed_by(self, host: str, signature: bytes, message: bytes) -> bool:
        """Whether ``host``'s pinned, still trusted key signed ``message``."""
        pair = self.trusted(host)
        return pair is not None and secagg.verify(pair[0], signature, message)

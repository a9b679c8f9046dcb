"""Aggregation of the FHPO agents' DP metrics per (model, configuration), weighted by slice size,
with secure aggregation for the configurations every replica scored.

Agents send ``quality * slice_size`` for shared configurations *masked*: each pair of agents
agrees a secret by X25519 Diffie-Hellman over their published public keys (``AgentKeys``); from
it both derive the same mask per (round, configuration); one adds it, the other subtracts it, so
the masks cancel in the sum and the aggregator, which holds no private key, only learns the sum
(needs three or more agents). No agent can unmask another either: it only knows the masks of its
own pairs. Other configurations are sent in the clear (they are already ε-DP). Each masked
metric names the peers it was masked with, and the aggregator sums a configuration only when
those lists agree pairwise (a peer whose key arrived late is caught, never summed wrongly).

Dropout recovery (the unmasking step of Bonawitz et al., 2017, without its double masking): when
an agent never reports, its pairwise masks stay in the survivors' shares. The aggregator names
the dropped agents; each survivor reveals the sum of the masks it shares with them (masks with
the dropped only, so no survivor's value is exposed as long as two or more survive), and the
aggregator subtracts those. A dropped agent's late metric is then refused. This trusts the
aggregator to name only agents that really dropped (double masking would remove that trust).

>>> keys = {a: AgentKeys.generate() for a in ("a", "b", "c")}
>>> public = {a: k.public_bytes for a, k in keys.items()}
>>> maskers = {a: PairwiseMasker(a, keys[a].pair_secrets(a, public, context=b"model-x")) for a in keys}
>>> shares = [maskers[a].mask("r1", "cfg", v) for a, v in [("a", 10.0), ("b", 20.0), ("c", 30.0)]]
>>> round(sum(shares), 6), shares[0] != 10.0
(60.0, True)
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class AgentKeys:
    """One agent's X25519 key pair. The public half is published; the private half never leaves
    the agent (a host keeps it on its own disk, so a restart keeps its pairs' secrets)."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public_bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> AgentKeys:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> AgentKeys:
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def pair_secrets(self, me: str, public: Mapping[str, bytes], context: bytes) -> dict[str, bytes]:
        """A 32-byte secret shared with each peer in ``public`` (peer -> raw public key), bound to
        ``context`` and to the pair's names, so a key reused elsewhere yields other masks."""
        out = {}
        for peer, raw in public.items():
            if peer == me:
                continue
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(raw))
            a, b = sorted((me, peer))
            info = b"fedrift-mask|" + context + f"|{a}|{b}".encode()
            out[peer] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
        return out


class PairwiseMasker:
    """One agent's masks: for each peer it shares a secret with, a pseudo-random mask per
    (round, configuration) that the peer derives too and applies with the opposite sign."""

    def __init__(self, agent: str, pair_secrets: Mapping[str, bytes], scale: float = 1e6) -> None:
        self.agent = agent
        self.secrets = dict(pair_secrets)
        self.scale = scale

    @property
    def peers(self) -> list[str]:
        """The peers this agent masks with (goes on the wire beside each masked metric)."""
        return sorted(self.secrets)

    def _signed(self, peer: str, round_id: str, cfg: str) -> float:
        digest = hashlib.sha256(self.secrets[peer] + f"|{round_id}|{cfg}".encode()).digest()
        m = (int.from_bytes(digest[:8], "big") / 2**64 - 0.5) * 2 * self.scale
        return m if self.agent < peer else -m

    def mask(self, round_id: str, cfg: str, value: float) -> float:
        return value + sum(self._signed(p, round_id, cfg) for p in self.secrets)

    def recovery_share(self, dropped: list[str], round_id: str, cfg: str,
                       revealed: Iterable[str] = ()) -> tuple[float, list[str]] | None:
        """What this agent added to its share for its pairs with the ``dropped`` agents, and which
        of them that covers (a dropped agent it had no key for was never masked with). None when
        the peers named, together with those it ``revealed`` before for the same share, are every
        peer it masked with: the answers together would expose its own value.

        >>> keys = {a: AgentKeys.generate() for a in ("a", "b", "c")}
        >>> public = {a: k.public_bytes for a, k in keys.items()}
        >>> m = {a: PairwiseMasker(a, keys[a].pair_secrets(a, public, b"x")) for a in keys}
        >>> survivors = {a: m[a].mask("r1", "cfg", v) for a, v in [("a", 10.0), ("b", 20.0)]}  # c dropped
        >>> shares = [m[a].recovery_share(["c"], "r1", "cfg") for a in survivors]
        >>> round(sum(survivors.values()) - sum(s for s, _ in shares), 6), shares[0][1]
        (30.0, ['c'])
        """
        covered = sorted(d for d in dropped if d in self.secrets)
        if self.secrets and set(covered) | set(revealed) >= set(self.secrets):
            return None
        return sum(self._signed(d, round_id, cfg) for d in covered), covered


@dataclass
class Contribution:
    """One agent's metric for one configuration. ``weighted`` is quality × slice size, masked or not."""

    agent: str
    config_id: str
    config: dict
    weighted: float
    slice_size: int
    noise_std: float
    masked: bool = False
    masked_with: tuple[str, ...] = ()  # the peers whose pairwise masks are in ``weighted``


@dataclass
class ConfigScore:
    config_id: str
    config: dict
    score: float
    std: float
    agents: list[str] = field(default_factory=list)

    @property
    def lower_bound(self) -> float:
        return self.score - self.std


@dataclass
class AggregateOutcome:
    model: str
    round_id: str
    best: ConfigScore | None
    leaderboard: list[ConfigScore]
    dropped: list[str]  # masked configurations whose masks could not be cancelled (agents missing, no recovery)


class Aggregator:
    """Collects contributions for one (model, round) and picks the best configuration.

    Score = Σ(quality·size)/Σsize. Its uncertainty combines the DP noise (public: from ε and the
    slice sizes) and the binomial sampling error of the pooled slices. The best configuration is
    the one with the highest lower bound (score − std), so a configuration confirmed by several
    replicas beats a lucky single noisy one.
    """

    def __init__(self, model: str, round_id: str, group: list[str]) -> None:
        self.model, self.round_id, self.group = model, round_id, sorted(group)
        self.contributions: dict[str, list[Contribution]] = defaultdict(list)
        self.declared_dropped: dict[str, list[str]] = {}  # config id -> agents declared dropped
        self.recovery: dict[str, dict[str, float]] = defaultdict(dict)  # config id -> agent -> share

    def add(self, c: Contribution) -> bool:
        """Whether ``c`` was taken (not a repeat, not from an agent already declared dropped)."""
        if any(x.agent == c.agent for x in self.contributions[c.config_id]):
            return False  # at-least-once delivery: a repeated metric counts once
        if c.agent in self.declared_dropped.get(c.config_id, ()):
            return False  # too late: the survivors were asked to unmask without it
        self.contributions[c.config_id].append(c)
        return True

    def incomplete_masked(self) -> dict[str, list[str]]:
        """Masked configurations with agents missing: config id -> the missing agents."""
        out = {}
        for cid, items in self.contributions.items():
            present = {c.agent for c in items}
            if any(c.masked for c in items) and present != set(self.group):
                out[cid] = sorted(set(self.group) - present)
        return out

    def declare_dropped(self) -> dict[str, list[str]]:
        """Freeze the missing agents of each incomplete masked configuration (to ask the
        survivors for recovery shares); their later metrics are refused."""
        for cid, missing in self.incomplete_masked().items():
            self.declared_dropped.setdefault(cid, missing)
        return dict(self.declared_dropped)

    def add_recovery(self, agent: str, config_id: str, covered: list[str], share: float) -> None:
        """A survivor's recovery share; ``covered`` must be exactly the declared-dropped agents it
        masked with, or the share would not cancel what it added."""
        mine = next((c for c in self.contributions.get(config_id, ()) if c.agent == agent), None)
        dropped = self.declared_dropped.get(config_id)
        if mine is None or dropped is None or not math.isfinite(share):
            return
        if sorted(covered) == sorted(set(dropped) & set(mine.masked_with)):
            self.recovery[config_id].setdefault(agent, share)

    def recovery_complete(self) -> bool:
        """Every survivor of every configuration declared incomplete has sent its share."""
        return all(
            {c.agent for c in self.contributions[cid]} <= set(self.recovery.get(cid, {}))
            for cid in self.declared_dropped
        )

    def _unmasked_sum(self, cid: str, items: list[Contribution]) -> float | None:
        """The sum of the true values, or None when the masks cannot be cancelled."""
        total = sum(c.weighted for c in items)
        masked = {c.agent: set(c.masked_with) for c in items if c.masked}
        if not masked:
            return total
        present = {c.agent for c in items}
        for a, peers in masked.items():  # a pair's masks cancel only if both sides applied them
            if any(a not in masked.get(b, ()) for b in peers & present):
                return None
        outside = set().union(*masked.values()) - present
        if not outside:
            return total  # every mask is shared with a present agent: they all cancel
        owing = [a for a, peers in masked.items() if peers & outside]
        shares = self.recovery.get(cid, {})
        if len(present) < 2 or not outside <= set(self.declared_dropped.get(cid, ())) or not set(owing) <= set(shares):
            return None
        return total - sum(shares[a] for a in owing)

    def result(self) -> AggregateOutcome:
        board, dropped = [], []
        for cid, items in self.contributions.items():
            total = self._unmasked_sum(cid, items)
            if total is None:
                dropped.append(cid)
                continue
            size = sum(c.slice_size for c in items)
            score = total / size
            dp_var = sum((c.noise_std * c.slice_size) ** 2 for c in items) / size**2
            p = min(max(score, 0.0), 1.0)
            std = math.sqrt(dp_var + p * (1 - p) / size)
            board.append(ConfigScore(cid, items[0].config, float(score), std, sorted(c.agent for c in items)))
        board.sort(key=lambda s: s.lower_bound, reverse=True)
        return AggregateOutcome(self.model, self.round_id, board[0] if board else None, board, dropped)

"""Aggregation of the FHPO agents' DP metrics per (model, configuration), weighted by slice size,
with secure aggregation (``fedrift.core.secagg``) for the configurations every replica scored.

Agents send ``quality * slice_size`` of shared configurations as a masked integer; the others in
the clear (they are ε-DP already). The aggregator then names the round's survivors (whose masked
metrics arrived) and the dropped (masked with, never arrived); each survivor answers once with its
Shamir shares of the survivors' self-mask seeds and of the dropped hosts' mask keys. From ``t``
shares of each the aggregator removes every mask and learns the sum, and nothing else: a host's
value stays behind its self-mask unless its seed is rebuilt, and its seed is rebuilt only when
``t`` hosts name it a survivor, which they do only when its pairwise masks stay hidden.

>>> from fedrift.core import secagg
>>> group = ["m-0", "m-1", "m-2"]
>>> secrets = {a: secagg.RoundSecrets.fresh() for a in group}
>>> shares = {a: s.split(n=3, t=2) for a, s in secrets.items()}
>>> agg = Aggregator("m", "r1", group, threshold=2)
>>> for a, v in [("m-0", 10.0), ("m-1", 20.0)]:  # m-2 drops out after sending its round keys
...     y = secagg.encode(v) + secagg.self_mask(secrets[a].seed, "r1", "cfg")
...     for p in group:
...         if p != a:
...             k = secagg.pair_secret(secrets[a].mask_private, secrets[p].mask_public, "m", "r1", a, p)
...             y += secagg.pair_mask(k, a, p, "r1", "cfg")
...     _ = agg.add(Contribution(a, "cfg", {}, 0.0, 100, 0.0, y % secagg.MODULUS,
...                              tuple(p for p in group if p != a), secrets[a].mask_public))
>>> agg.declare()
(['m-0', 'm-1'], ['m-2'])
>>> for x, a in [(1, "m-0"), (2, "m-1")]:
...     agg.add_unmask(a, x, {s: secagg.seed_share(shares[s][x]) for s in ("m-0", "m-1")},
...                    {"m-2": secagg.key_share(shares["m-2"][x])})
>>> round(agg.result().best.score * 200, 6)
30.0
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedrift.core import secagg

log = logging.getLogger(__name__)


def replica_index(agent: str) -> int:
    """The Shamir x-coordinate of ``<model>-<replica>``: replica + 1."""
    return int(agent.rsplit("-", 1)[1]) + 1


@dataclass
class Contribution:
    """One agent's metric for one configuration: ``weighted`` (quality × slice size) in the clear,
    or ``masked`` (its secure-aggregation encoding) with the peers it was masked with."""

    agent: str
    config_id: str
    config: dict
    weighted: float
    slice_size: int
    noise_std: float
    masked: int | None = None
    masked_with: tuple[str, ...] = ()
    mask_key: bytes = b""


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
    dropped: list[str]  # masked configurations whose masks could not be removed


class Aggregator:
    """Collects contributions for one (model, round) and picks the best configuration.

    Score = Σ(quality·size)/Σsize. Its uncertainty combines the DP noise (public: from ε and the
    slice sizes) and the binomial sampling error of the pooled slices. The best configuration is
    the one with the highest lower bound (score − std), so a configuration confirmed by several
    replicas beats a lucky single noisy one.
    """

    def __init__(self, model: str, round_id: str, group: list[str], threshold: int) -> None:
        self.model, self.round_id, self.group = model, round_id, sorted(group)
        self.threshold = threshold
        self.contributions: dict[str, list[Contribution]] = defaultdict(list)
        self.survivors: list[str] | None = None  # fixed by ``declare``; later masked metrics are refused
        self.dropped: list[str] = []
        self.seed_shares: dict[str, dict[int, bytes]] = defaultdict(dict)  # survivor -> x -> seed share
        self.key_shares: dict[str, dict[int, bytes]] = defaultdict(dict)  # dropped -> x -> key share
        self.answered: set[str] = set()
        self._secrets: tuple[dict[str, bytes], dict[str, X25519PrivateKey]] | None = None  # set by ``_rebuilt``

    def add(self, c: Contribution) -> bool:
        """Whether ``c`` was taken (not a repeat, not a masked metric after the survivors were named)."""
        if any(x.agent == c.agent for x in self.contributions[c.config_id]):
            return False  # at-least-once delivery: a repeated metric counts once
        if c.masked is not None and (self.survivors is not None or c.agent not in self.group):
            return False  # too late: the survivors were named without it
        self.contributions[c.config_id].append(c)
        return True

    def masked_agents(self) -> list[str]:
        return sorted({c.agent for items in self.contributions.values() for c in items if c.masked is not None})

    def declare(self) -> tuple[list[str], list[str]]:
        """Fix the survivors (masked metrics arrived) and the dropped (masked with, missing)."""
        if self.survivors is None:
            self.survivors = self.masked_agents()
            named = {p for items in self.contributions.values() for c in items if c.masked is not None
                     for p in c.masked_with}
            self.dropped = sorted((named & set(self.group)) - set(self.survivors))
        return list(self.survivors), list(self.dropped)

    def add_unmask(self, agent: str, index: int, seeds: dict[str, bytes], keys: dict[str, bytes]) -> None:
        """A survivor's shares; kept only if it answers the request as made (and once)."""
        if self.survivors is None or agent not in self.survivors or agent in self.answered:
            return
        if index != replica_index(agent) or not set(seeds) <= set(self.survivors) or not set(keys) <= set(self.dropped):
            return
        self.answered.add(agent)
        self._secrets = None  # more shares: rebuild again
        for a, share in seeds.items():
            self.seed_shares[a][index] = share
        for a, share in keys.items():
            self.key_shares[a][index] = share

    def unmask_complete(self) -> bool:
        return self.survivors is not None and self.answered >= set(self.survivors)

    def _masks(self, cid: str, items: list[Contribution]) -> int | None:
        """The sum of the masks in ``items`` (to subtract), or None when they cannot all be rebuilt."""
        by_agent = {c.agent: c for c in items}
        survivors = set(self.survivors or ())
        if set(by_agent) != survivors:
            return None  # a survivor's pairwise masks for this configuration would not cancel
        for a, c in by_agent.items():
            for b in set(c.masked_with) & survivors:
                if a not in by_agent[b].masked_with:
                    return None  # only one side of the pair masked: it cannot cancel
        seeds, keys = self._rebuilt()
        total = 0
        for a, c in by_agent.items():
            if a not in seeds:
                return None
            total += secagg.self_mask(seeds[a], self.round_id, cid)
            for d in set(c.masked_with) - survivors:
                if d not in keys:
                    return None
                secret = secagg.pair_secret(keys[d], c.mask_key, self.model, self.round_id, d, a)
                total += secagg.pair_mask(secret, a, d, self.round_id, cid)
        return total

    def _rebuilt(self) -> tuple[dict[str, bytes], dict[str, X25519PrivateKey]]:
        """The seeds and mask keys ``threshold`` shares rebuild, once per round (not per configuration)."""
        if self._secrets is None:
            t = self.threshold
            self._secrets = (
                {a: secagg.combine_seed(s, t) for a, s in self.seed_shares.items() if len(s) >= t},
                {d: secagg.combine_mask_key(s, t) for d, s in self.key_shares.items() if len(s) >= t},
            )
        return self._secrets

    def _sum(self, cid: str, items: list[Contribution]) -> float | None:
        """The sum of the true values, or None when the masks cannot be removed."""
        clear = sum(c.weighted for c in items if c.masked is None)
        masked = [c for c in items if c.masked is not None]
        if not masked:
            return clear
        if self.survivors is None or len(self.survivors) < self.threshold:
            return None
        try:
            masks = self._masks(cid, masked)
        except ValueError:  # shares a host signed but made up: no key rebuilds, the configuration is dropped
            log.warning("round %s/%s: the masks of %s could not be rebuilt", self.model, self.round_id, cid)
            return None
        if masks is None:
            return None
        return clear + secagg.decode(sum(c.masked for c in masked if c.masked is not None) - masks)

    def result(self) -> AggregateOutcome:
        board, dropped = [], []
        for cid, items in self.contributions.items():
            total = self._sum(cid, items)
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

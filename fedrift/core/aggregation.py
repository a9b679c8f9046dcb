"""Aggregation of the FHPO agents' DP metrics per (model, configuration), weighted by slice size,
with secure aggregation for the configurations every replica scored.

Agents send ``quality * slice_size`` for shared configurations *masked*: each pair of agents
derives a mask from a pairwise secret; one adds it, the other subtracts it, so the masks cancel in
the sum and the aggregator only ever learns the sum (needs three or more agents). Other
configurations are sent in the clear (they are already ε-DP).

>>> m = PairwiseMasker(["a", "b", "c"], group_secret=b"k")
>>> shares = [m.mask(agent, "r1", "cfg", v) for agent, v in [("a", 10.0), ("b", 20.0), ("c", 30.0)]]
>>> round(sum(shares), 6), shares[0] != 10.0
(60.0, True)
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field


class PairwiseMasker:
    """Masks that cancel in the sum over the agent group. The pairwise secret stands in for a
    Diffie-Hellman key agreement between each pair (the aggregator never holds it)."""

    def __init__(self, agents: list[str], group_secret: bytes, scale: float = 1e6) -> None:
        self.agents = sorted(agents)
        self.secret = group_secret
        self.scale = scale

    def _pair_mask(self, a: str, b: str, round_id: str, cfg: str) -> float:
        digest = hashlib.sha256(self.secret + f"|{a}|{b}|{round_id}|{cfg}".encode()).digest()
        return (int.from_bytes(digest[:8], "big") / 2**64 - 0.5) * 2 * self.scale

    def mask(self, agent: str, round_id: str, cfg: str, value: float) -> float:
        out = value
        for other in self.agents:
            if other == agent:
                continue
            a, b = sorted((agent, other))
            m = self._pair_mask(a, b, round_id, cfg)
            out += m if agent == a else -m
        return out


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
    dropped: list[str]  # masked configurations whose group was incomplete (masks would not cancel)


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

    def add(self, c: Contribution) -> None:
        if any(x.agent == c.agent for x in self.contributions[c.config_id]):
            return  # at-least-once delivery: a repeated metric counts once
        self.contributions[c.config_id].append(c)

    def result(self) -> AggregateOutcome:
        board, dropped = [], []
        for cid, items in self.contributions.items():
            if any(c.masked for c in items) and sorted(c.agent for c in items) != self.group:
                dropped.append(cid)
                continue
            size = sum(c.slice_size for c in items)
            score = sum(c.weighted for c in items) / size
            dp_var = sum((c.noise_std * c.slice_size) ** 2 for c in items) / size**2
            p = min(max(score, 0.0), 1.0)
            std = math.sqrt(dp_var + p * (1 - p) / size)
            board.append(ConfigScore(cid, items[0].config, float(score), std, sorted(c.agent for c in items)))
        board.sort(key=lambda s: s.lower_bound, reverse=True)
        return AggregateOutcome(self.model, self.round_id, board[0] if board else None, board, dropped)

"""Aggregation of the FHPO agents' DP metrics per (model, configuration), weighted by slice size,
with secure aggregation for the configurations every replica scored.

Agents send ``quality * slice_size`` for shared configurations *masked*: each pair of agents
derives a mask from a pairwise secret; one adds it, the other subtracts it, so the masks cancel in
the sum and the aggregator only ever learns the sum (needs three or more agents). Other
configurations are sent in the clear (they are already ε-DP).

Dropout recovery (the unmasking step of Bonawitz et al., 2017, without its double masking): when
an agent never reports, its pairwise masks stay in the survivors' shares. The aggregator names
the dropped agents; each survivor reveals the sum of the masks it shares with them (masks with
the dropped only, so no survivor's value is exposed as long as two or more survive), and the
aggregator subtracts those. A dropped agent's late metric is then refused. This trusts the
aggregator to name only agents that really dropped (double masking would remove that trust).

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

    def _signed(self, agent: str, other: str, round_id: str, cfg: str) -> float:
        a, b = sorted((agent, other))
        m = self._pair_mask(a, b, round_id, cfg)
        return m if agent == a else -m

    def mask(self, agent: str, round_id: str, cfg: str, value: float) -> float:
        return value + sum(self._signed(agent, o, round_id, cfg) for o in self.agents if o != agent)

    def recovery_share(self, agent: str, dropped: list[str], round_id: str, cfg: str) -> float:
        """What ``agent`` added to its share for its pairs with the ``dropped`` agents.

        >>> m = PairwiseMasker(["a", "b", "c"], group_secret=b"k")
        >>> survivors = {x: m.mask(x, "r1", "cfg", v) for x, v in [("a", 10.0), ("b", 20.0)]}  # c dropped
        >>> shares = [m.recovery_share(x, ["c"], "r1", "cfg") for x in survivors]
        >>> round(sum(survivors.values()) - sum(shares), 6)
        30.0
        """
        return sum(self._signed(agent, d, round_id, cfg) for d in dropped if d != agent)


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

    def add_recovery(self, agent: str, config_id: str, dropped: list[str], share: float) -> None:
        if sorted(dropped) == self.declared_dropped.get(config_id) and math.isfinite(share):
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
        if not any(c.masked for c in items) or sorted(c.agent for c in items) == self.group:
            return total
        survivors = {c.agent for c in items}
        dropped = self.declared_dropped.get(cid)
        shares = self.recovery.get(cid, {})
        if len(survivors) < 2 or dropped != sorted(set(self.group) - survivors) or not survivors <= set(shares):
            return None
        return total - sum(shares[a] for a in survivors)

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

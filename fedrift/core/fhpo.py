"""The FHPO agent core: Bayesian optimisation (scikit-optimize ask/tell) of one model replica's
hyperparameters on its *local* data, publishing only differentially-private metrics.

Per round: candidates are the production configuration, a small design shared by every replica of
the model (same points, so the aggregator can combine them), and points the local optimiser asks
for. Each candidate is trained on the older part of the replica's window and scored on the newest
slice (time order kept), predicting only, so each slice record moves the mean by at most
range / slice size (``score``). Quality and latency are noised with diffprivlib's Laplace mechanism
at that sensitivity and the optimiser is told only values that are full ε-DP releases (its next
points are published in the clear).

The quality of a *shared* configuration leaves the host only inside secure aggregation's sum, so
its noise is distributed: with ``noise_shares`` = s (the secure-aggregation threshold t − 1),
each host adds the difference of two Gamma(1/s, b) draws, and the sum over any s or more hosts
carries at least Laplace(b) — the noise one host's Laplace mechanism needs (Laplace is infinitely
divisible). An unmasked sum has at least t survivors, so it keeps that noise for the others even
with one host's own share taken out, at (t / (t − 1)) times one mechanism's variance instead of
t times. Clear metrics, and every metric when secure aggregation is off, carry the full local
noise.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diffprivlib.mechanisms import Laplace
from skopt import Optimizer
from skopt.sampler import Lhs

from fedrift.core.metrics import Accuracy, Metric
from fedrift.core.models import ModelFamily, clean_config, config_id
from fedrift.core.privacy import PrivacyLedger


@dataclass(frozen=True)
class FhpoConfig:
    n_shared: int = 2  # shared design points evaluated by every replica
    n_local: int = 2  # points the local GP optimiser asks for
    epsilon_quality: float = 0.4  # per published quality
    epsilon_latency: float = 0.1  # per published latency
    latency_clip_ms: float = 5.0  # per-record latency bound (sets the latency sensitivity)
    holdout: int = 250  # newest events of the local window: the scoring slice
    min_holdout: int = 125  # a shorter window scores on a smaller slice (its noise scaled to match)
    min_train: int = 250
    window: int = 1000  # local window kept per replica (train = window - holdout)
    min_survivors: int = 3  # a host helps unmask a share only while this many maskers survive (itself included)
    distributed_noise: bool = True  # masked metrics carry a (min_survivors − 1)-th of the noise (false: all)


@dataclass
class TrialResult:
    round_id: str
    model: str
    agent: str
    config_id: str
    config: dict
    noised_quality: float
    noised_latency_ms: float
    slice_size: int
    epsilon_spent: float
    shared: bool
    noise_std: float  # std of the DP noise on the quality (public: it follows from ε and the slice size)


@dataclass
class RoundOutcome:
    status: str  # "ok" | "budget spent" | "not enough data"
    trials: list[TrialResult] = field(default_factory=list)


def shared_design(family: ModelFamily, design: str, n: int) -> list[dict]:
    """The same ``n`` Latin-hypercube points for every replica of ``family`` in a round whose
    trigger names ``design`` (its round id when it names none)."""
    if n <= 0 or not family.space:
        return []
    seed = int(hashlib.sha1(f"{family.name}/{design}".encode()).hexdigest()[:8], 16)
    points = Lhs(criterion="maximin", iterations=20).generate(family.space, n, random_state=seed)
    return [family.from_point(p) for p in points]


class LocalWindow:
    """The replica's own recent labelled events, in arrival order, with their stream positions
    and the event times of their requests.

    >>> w = LocalWindow(3)
    >>> for t in (10, 20, 30, 40):
    ...     w.add(t // 10, [float(t)], 1, event_time=t)
    >>> [p for p, _, _ in w.as_of(35)], len(w.as_of(-1)), len(w.as_of(5))
    ([2, 3], 3, 3)
    >>> w.add(5, [15.0], 0, event_time=15)  # a late label of an old request, learned after 4
    >>> [p for p, _, _ in w.as_of(35)]
    [3]
    """

    def __init__(self, size: int) -> None:
        self.events: deque[tuple[int, list[float], int]] = deque(maxlen=size)
        self.times: deque[int] = deque(maxlen=size)

    def add(self, position: int, x: list[float], y: int, event_time: int = 0) -> None:
        self.events.append((position, x, y))
        self.times.append(event_time)

    def as_of(self, event_time: int) -> list[tuple[int, list[float], int]]:
        """The events learned before the stream passed ``event_time`` (a trigger's data time): the
        prefix whose newest request time so far is no later than it, so a label that came late
        for an old request does not stretch the cut over newer events. A round tunes on the data
        its drift was seen on, however late the trigger reaches this host. The whole window when
        ``event_time`` is negative or when every event is newer (nothing older is left)."""
        events = list(self.events)
        if event_time < 0:
            return events
        newest = list(itertools.accumulate(self.times, max))
        cut = bisect.bisect_right(newest, event_time)
        return events[:cut] if cut else events

    def __setstate__(self, state: dict) -> None:
        """A checkpoint from before event times were kept: its events count as time 0."""
        state.setdefault("times", deque([0] * len(state["events"]), maxlen=state["events"].maxlen))
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.events)


class FhpoAgent:
    """One per model replica; owns the replica's local window and ε ledger."""

    def __init__(
        self,
        family: ModelFamily,
        agent_id: str,
        ledger: PrivacyLedger,
        config: FhpoConfig | None = None,
        seed: int = 0,
        metric: Metric | None = None,
        noise_seed: int | None = None,
        noise_shares: int = 1,
    ) -> None:
        """``seed`` drives the optimiser. The DP noise comes from diffprivlib's secure generator
        (``random.SystemRandom``; for the distributed shares, the standard library's gamma
        sampler over it) unless ``noise_seed`` is given: noise that follows from a known seed can
        be subtracted from the published value, so only the simulator, which publishes nothing,
        seeds it (for reproducible runs). ``noise_shares``: the secure-aggregation threshold t − 1
        when shared metrics leave only masked, else 1."""
        self.family = family
        self.agent_id = agent_id
        self.ledger = ledger
        self.config = config or FhpoConfig()
        self.seed = seed
        self.metric = metric or Accuracy()
        self.window = LocalWindow(self.config.window)
        self.noise_shares = noise_shares
        self._noise_rng = None if noise_seed is None else np.random.default_rng(noise_seed)

    def __getstate__(self) -> dict:  # the family holds lambdas: it travels by name
        return {**self.__dict__, "family": self.family.name}

    def __setstate__(self, state: dict) -> None:
        from fedrift.core.models import FAMILIES

        self.__dict__.update({**state, "family": FAMILIES[state["family"]]})

    def observe(self, position: int, x: list[float], y: int) -> None:
        self.window.add(position, x, y)

    def run_round(self, round_id: str, production: dict, events: list | None = None, design: str = "") -> RoundOutcome:
        """One BO round on the local window (or on ``events``, a snapshot of it taken by the caller
        so the window can keep filling while the round runs in another thread); ``design`` seeds
        the shared candidates (the round id when empty)."""
        cfg = self.config
        events = list(self.window.events) if events is None else events
        n_holdout = min(cfg.holdout, len(events) - cfg.min_train)
        if n_holdout < max(cfg.min_holdout, 1):
            return RoundOutcome("not enough data")
        train, holdout = events[:-n_holdout], events[-n_holdout:]
        span = (holdout[0][0], holdout[-1][0] + 1)
        per_metric = cfg.epsilon_quality + cfg.epsilon_latency
        shared = [clean_config({**self.family.defaults, **production})]
        designed = shared_design(self.family, design or round_id, cfg.n_shared)
        shared += [c for c in designed if config_id(c) != config_id(shared[0])]
        outcome = RoundOutcome("ok")
        opt = (
            Optimizer(self.family.space, base_estimator="GP", n_initial_points=len(shared), random_state=self.seed)
            if self.family.space
            else None
        )
        queue = [(c, True) for c in shared]
        while queue or (opt is not None and len(outcome.trials) < len(shared) + cfg.n_local):
            if not self.ledger.can_spend(per_metric, span):  # this slice's records: a later slice may pay
                outcome.status = "budget spent"
                break
            if queue:
                candidate, is_shared = queue.pop(0)
            elif opt is not None:
                candidate, is_shared = self.family.from_point(opt.ask()), False
            trial = self._evaluate(round_id, candidate, train, holdout, span, is_shared)
            outcome.trials.append(trial)
            point = self.family.to_point(candidate)
            # the optimiser's next points are published in the clear: it may only be told values
            # that are full ε-DP releases, not a shared value carrying just a share of the noise
            informative = not (is_shared and self.noise_shares > 1)
            if opt is not None and informative and point in opt.space:  # defaults may lie outside the space
                opt.tell(point, -trial.noised_quality)
        return outcome

    def _evaluate(self, round_id, candidate, train, holdout, span, is_shared) -> TrialResult:
        cfg = self.config
        qualities, latencies = score(self.family.build(candidate, seed=self.seed), train, holdout, self.metric,
                                     cfg.latency_clip_ms)
        n = len(holdout)
        q_sens = (self.metric.upper - self.metric.lower) / n
        rs_q, rs_l = (None, None) if self._noise_rng is None else self._noise_rng.integers(2**31, size=2).tolist()
        quality, b_q = float(np.mean(qualities)), q_sens / cfg.epsilon_quality
        if is_shared and self.noise_shares > 1:
            noised_q = quality + self._laplace_share(b_q, self.noise_shares)
            noise_std = float(np.sqrt(2.0 / self.noise_shares) * b_q)
        else:
            noised_q = Laplace(epsilon=cfg.epsilon_quality, sensitivity=q_sens, random_state=rs_q).randomise(quality)
            noise_std = float(np.sqrt(2.0) * b_q)
        noised_l = Laplace(
            epsilon=cfg.epsilon_latency, sensitivity=cfg.latency_clip_ms / n, random_state=rs_l
        ).randomise(float(np.mean(latencies)))
        self.ledger.spend(cfg.epsilon_quality + cfg.epsilon_latency, span)  # raises BudgetSpent if over
        return TrialResult(
            round_id=round_id,
            model=self.family.name,
            agent=self.agent_id,
            config_id=config_id(candidate),
            config=candidate,
            noised_quality=float(noised_q),
            noised_latency_ms=float(noised_l),
            slice_size=n,
            epsilon_spent=self.ledger.max_loss,
            shared=is_shared,
            noise_std=noise_std,
        )

    def _laplace_share(self, scale: float, shares: int) -> float:
        """One of ``shares`` summands of Laplace(scale): Gamma(1/shares, scale) − Gamma(1/shares, scale)."""
        if self._noise_rng is not None:
            return float(self._noise_rng.gamma(1 / shares, scale) - self._noise_rng.gamma(1 / shares, scale))
        rng = random.SystemRandom()
        return rng.gammavariate(1 / shares, scale) - rng.gammavariate(1 / shares, scale)


def score(model, train: list, holdout: list, metric: Metric, latency_clip_ms: float) -> tuple[list, list]:
    """Per holdout record, the candidate's quality and its clipped prediction latency (ms).

    The model learns ``train`` and then only predicts on ``holdout``: a record of the slice
    changes its own term and nothing else, which is what the 1/n sensitivity of the mean
    assumes. (Learning inside the slice, test-then-train, would let one record move every later
    prediction: measured, one replaced record changed 115 of 250 hits.)
    """
    for _, x, y in train:
        model.learn_one(x, y)
    qualities, latencies = [], []
    for _, x, y in holdout:
        t0 = time.perf_counter()
        y_pred = model.predict_one(x)
        latencies.append(min((time.perf_counter() - t0) * 1000.0, latency_clip_ms))
        qualities.append(metric(y_pred, y))
    return qualities, latencies

"""``fedrift simulate``: the whole control loop in one process, no Kafka, deterministic for a seed.

router → K replicas per model → drift analyzer → FHPO → aggregator → controller → shadow → promotion,
built from the same core classes the stream processors use, beside the baselines measured on the
same events:

* ``patent``: weights ∝ historical (windowed) accuracy, deficit routing, no HPO (US11170309);
* ``uniform``: equal weights, deficit routing;
* ``model:<id>``: one pool member alone, default configuration;
* ``oracle_window``: the best pool member of each 500-event window, chosen in hindsight.

Simulation model: labels arrive right after each prediction and are broadcast to every model (all
models learn from all labelled traffic; routing decides who *serves*). Each event belongs to one
replica of every model (round robin), which keeps it in its local window for FHPO. A shadow
warm-starts on its model's replicas' local windows, then runs beside production on every request.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fedrift.core.aggregation import AgentKeys, Aggregator, Contribution, PairwiseMasker
from fedrift.core.drift import DriftAnalyzer, DriftConfig
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.metrics import WindowedMean, paired_gap
from fedrift.core.models import FAMILIES, Classifier, ModelFamily, clean_config, config_id
from fedrift.core.privacy import PrivacyLedger
from fedrift.core.router import DeficitRouter
from fedrift.core.routing import (
    InputSketch,
    RoutingConfig,
    RoutingController,
    drift_compensation,
    evidence_due,
)
from fedrift.core.shadow import ShadowEvaluator

DEFAULT_POOL = ("linear", "hat", "gnb", "knn", "arf", "sgd")


@dataclass(frozen=True)
class SimConfig:
    models: tuple[str, ...] = DEFAULT_POOL
    replicas: int = 3
    seed: int = 0
    accuracy_window: int = 500  # the patent's historical-accuracy window; sketch half-life; drift look-back
    fedrift_window: int = 1000  # fedrift's windowed accuracy (pruning, drift compensation, HPO top-k) ...
    keep_after_drift: int = 300  # ... cut to its last N events at a drift trigger (0 = never cut)
    update_every: int = 50  # events between routing-weight updates (more often at a cold start)
    oracle_window: int = 500
    epsilon_budget: float = 10.0
    drift: DriftConfig = field(default_factory=DriftConfig)
    fhpo: FhpoConfig = field(default_factory=FhpoConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    shadow_alpha: float = 0.05
    shadow_min: int = 200
    shadow_max: int = 5000
    hpo_top_k: int = 3  # tune the models that carry traffic: the k most accurate live ones


@dataclass
class Deployed:
    """A model in the fedrift pool: its production model and configuration, and its shadow if any."""

    family: ModelFamily
    model: Classifier
    config: dict
    accuracy: WindowedMean
    sketch: InputSketch = field(default_factory=InputSketch)
    shadow: Classifier | None = None
    shadow_config: dict | None = None
    shadow_eval: ShadowEvaluator | None = None
    shadow_round: str = ""
    shadow_sketch: InputSketch | None = None


class Simulation:
    def __init__(self, config: SimConfig | None = None, feature_names: list[str] | None = None) -> None:
        self.cfg = cfg = config or SimConfig()
        unknown = [m for m in cfg.models if m not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; the pool has {sorted(FAMILIES)}")
        self.t = 0
        self.feature_names = feature_names
        seed = cfg.seed
        self.static = {m: FAMILIES[m].build(FAMILIES[m].defaults, seed=seed) for m in cfg.models}
        self.static_acc = {m: WindowedMean(cfg.accuracy_window) for m in cfg.models}
        # fedrift starts from the same models; a promotion replaces one with its (different) shadow
        self.pool = {
            m: Deployed(FAMILIES[m], self.static[m], dict(FAMILIES[m].defaults), WindowedMean(cfg.fedrift_window))
            for m in cfg.models
        }
        self.agents = {
            m: [
                FhpoAgent(FAMILIES[m], f"{m}-{r}", PrivacyLedger(cfg.epsilon_budget), cfg.fhpo, seed=seed * 1000 + r)
                for r in range(cfg.replicas)
            ]
            for m in cfg.models
        }
        self.masker = {m: self._maskers(m, [a.agent_id for a in agents], seed) for m, agents in self.agents.items()}
        uniform = {m: 1.0 for m in cfg.models}
        self.routers = {
            "fedrift": DeficitRouter(uniform),
            "patent": DeficitRouter(uniform),
            "uniform": DeficitRouter(uniform),
        }
        self.controller = RoutingController(cfg.routing)
        self.pruned: dict[str, str] = {}
        self.analyzer = DriftAnalyzer(cfg.drift, seed=seed, feature_names=feature_names)
        self.correct: dict[str, list[bool]] = {k: [] for k in ("fedrift", "patent", "uniform")}
        self.correct.update({f"model:{m}": [] for m in cfg.models})
        self.labels: list = []
        self.triggers: list[dict] = []
        self.hpo_rounds: list[dict] = []
        self.promotions: list[dict] = []
        self.rejections: list[dict] = []
        self.weights_log: list[tuple[int, dict[str, float]]] = []
        self.drift_log: list[tuple[int, float, float]] = []
        self._current_sketch = InputSketch(half_life=cfg.accuracy_window / 2)
        self._acc_history: list[tuple[int, dict[str, float]]] = []  # (position, windowed accuracy)
        self._updated_at = 0
        self._before_drift: dict[str, float] | None = None
        self._batch_hits = {m: 0 for m in cfg.models}  # correct answers since the last weight update

    @staticmethod
    def _maskers(model: str, agents: list[str], seed: int) -> dict[str, PairwiseMasker]:
        """Each replica's key pair (from the seed, so a run is reproducible) and pairwise masks."""
        keys = {a: AgentKeys.from_private_bytes(hashlib.sha256(f"{seed}/{a}".encode()).digest()) for a in agents}
        public = {a: k.public_bytes for a, k in keys.items()}
        return {a: PairwiseMasker(a, keys[a].pair_secrets(a, public, model.encode())) for a in agents}

    # -- one event -----------------------------------------------------------------------------
    def step(self, x: list[float], y) -> None:
        self.t += 1
        t = self.t
        static_pred = {m: model.predict_one(x) for m, model in self.static.items()}
        fed_pred = {
            m: static_pred[m] if d.model is self.static[m] else d.model.predict_one(x) for m, d in self.pool.items()
        }
        served = {
            "fedrift": fed_pred[self.routers["fedrift"].choose()],
            "patent": static_pred[self.routers["patent"].choose()],
            "uniform": static_pred[self.routers["uniform"].choose()],
        }
        for name, pred in served.items():
            self.correct[name].append(pred == y)
        for m, pred in static_pred.items():
            self.correct[f"model:{m}"].append(pred == y)
        self.labels.append(y)
        self._run_shadows(x, y, fed_pred)

        # labels are broadcast: every model learns, every replica of the event's shard keeps it
        for m, model in self.static.items():
            model.learn_one(x, y)
            self.static_acc[m].update(float(static_pred[m] == y))
        for m, d in self.pool.items():
            if d.model is not self.static[m]:
                d.model.learn_one(x, y)
            d.accuracy.update(float(fed_pred[m] == y))
            self._batch_hits[m] += fed_pred[m] == y
            d.sketch.add(x)
            self.agents[m][t % self.cfg.replicas].observe(t, x, y)
        self._current_sketch.add(x)

        report = self.analyzer.update(x, error=int(served["fedrift"] != y))
        if report is not None:
            self.drift_log.append((t, report.score, report.threshold))
            if report.triggered:
                self._on_trigger(report)
        if evidence_due(t, self._updated_at, self.cfg.update_every):
            self._update_weights()

    # -- control loop --------------------------------------------------------------------------
    def _update_weights(self) -> None:
        n, self._updated_at = self.t - self._updated_at, self.t
        self.controller.observe({m: hits / n for m, hits in self._batch_hits.items()}, n)
        self._batch_hits = dict.fromkeys(self._batch_hits, 0)
        acc = {m: d.accuracy.mean for m, d in self.pool.items()}
        self._acc_history.append((self.t, acc))
        alignment = {m: d.sketch.similarity(self._current_sketch) for m, d in self.pool.items()}
        drift_comp = drift_compensation(acc, self._before_drift)
        decision = self.controller.update(acc, alignment, drift_comp)
        self.routers["fedrift"].set_weights(decision.weights, decision.version)
        self.weights_log.append((self.t, decision.weights))
        patent = {m: max(a.mean, 1e-6) for m, a in self.static_acc.items()}
        self.routers["patent"].set_weights(patent)
        self.pruned = decision.pruned

    def _on_trigger(self, report) -> None:
        i = bisect.bisect_right(self._acc_history, self.t - self.cfg.accuracy_window, key=lambda e: e[0])
        if i:
            self._before_drift = self._acc_history[i - 1][1]
        if self.cfg.keep_after_drift:
            for d in self.pool.values():
                d.accuracy.keep_last(self.cfg.keep_after_drift)
        self.triggers.append({"position": self.t, "source": report.source, "score": report.score})
        self._hpo_round(report.source)

    def _hpo_round(self, reason: str) -> None:
        round_id = f"round-{len(self.hpo_rounds) + 1}"
        pruned = self.pruned
        summary = {"round_id": round_id, "position": self.t, "reason": reason, "models": {}}
        live = sorted((m for m in self.pool if m not in pruned), key=lambda m: -self.pool[m].accuracy.mean)
        for m in live[: self.cfg.hpo_top_k]:
            d = self.pool[m]
            if d.shadow is not None:
                continue
            outcome = self._hpo(m, d, round_id)
            summary["models"][m] = outcome
        self.hpo_rounds.append(summary)

    def _hpo(self, m: str, d: Deployed, round_id: str) -> dict:
        agg = Aggregator(m, round_id, [a.agent_id for a in self.agents[m]])
        statuses = {}
        for agent in self.agents[m]:
            outcome = agent.run_round(round_id, d.config)
            statuses[agent.agent_id] = outcome.status
            for tr in outcome.trials:
                weighted, peers = tr.noised_quality * tr.slice_size, ()
                if tr.shared:
                    masker = self.masker[m][agent.agent_id]
                    weighted, peers = masker.mask(round_id, tr.config_id, weighted), tuple(masker.peers)
                agg.add(
                    Contribution(
                        tr.agent, tr.config_id, tr.config, weighted, tr.slice_size, tr.noise_std, tr.shared, peers
                    )
                )
        result = agg.result()
        info = {"status": statuses, "best": None}
        if result.best is None:
            return info
        prod_id = config_id(clean_config({**d.family.defaults, **d.config}))
        prod = next((s for s in result.leaderboard if s.config_id == prod_id), None)
        info["best"] = {"config": result.best.config, "score": result.best.score, "std": result.best.std}
        if result.best.config_id != prod_id and (prod is None or result.best.score > prod.score):
            self._start_shadow(m, d, result.best.config, round_id)
            info["shadow"] = True
        return info

    def _start_shadow(self, m: str, d: Deployed, config: dict, round_id: str) -> None:
        shadow = d.family.build(config, seed=self.cfg.seed)
        local = sorted((e for a in self.agents[m] for e in a.window.events), key=lambda e: e[0])
        sketch = InputSketch(d.family.memory(config))
        for _, x, y in local[-self.cfg.fhpo.window :]:
            shadow.learn_one(x, y)
            sketch.add(x)
        d.shadow_sketch = sketch
        d.shadow, d.shadow_config, d.shadow_round = shadow, config, round_id
        d.shadow_eval = ShadowEvaluator(
            self.cfg.shadow_alpha, self.cfg.shadow_alpha, self.cfg.shadow_min, self.cfg.shadow_max
        )

    def _run_shadows(self, x, y, fed_pred) -> None:
        for m, d in self.pool.items():
            if d.shadow is None:
                continue
            shadow_pred = d.shadow.predict_one(x)
            d.shadow.learn_one(x, y)
            d.shadow_sketch.add(x)
            decision = d.shadow_eval.update(fed_pred[m] == y, shadow_pred == y)
            if decision is None:
                continue
            record = {
                "model": m,
                "position": self.t,
                "round_id": d.shadow_round,
                "config": d.shadow_config,
                "reason": decision.reason,
                "evidence": decision.evidence,
            }
            if decision.action == "promote":
                d.model, d.config = d.shadow, d.shadow_config
                d.sketch = d.shadow_sketch
                self.promotions.append(record)
            else:
                self.rejections.append(record)
            d.shadow = d.shadow_config = d.shadow_eval = None

    # -- results -------------------------------------------------------------------------------
    def oracle_window(self) -> np.ndarray:
        """Per-event correctness of the best static model of each window, chosen in hindsight."""
        w = self.cfg.oracle_window
        cols = np.array([self.correct[f"model:{m}"] for m in self.cfg.models], dtype=bool)
        out = np.zeros(cols.shape[1], dtype=bool)
        for start in range(0, cols.shape[1], w):
            block = cols[:, start : start + w]
            out[start : start + w] = block[int(np.argmax(block.sum(axis=1)))]
        return out

    def system_correct(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v, dtype=bool) for k, v in self.correct.items()}
        out["oracle_window"] = self.oracle_window()
        return out

    def comparison(self, correct: dict[str, np.ndarray]) -> dict:
        """fedrift minus the patent and minus the best single model in hindsight, in accuracy, with a
        95 % batch-means interval (500-event batches): a gap inside it is not told apart from noise."""
        singles = [k for k in correct if k.startswith("model:")]
        best = max(singles, key=lambda k: int(correct[k].sum()))

        def gap(other: str) -> dict:
            g = paired_gap(correct["fedrift"], correct[other], batch=self.cfg.oracle_window)
            return {"against": other, "gap": round(g.mean, 6), "low": _finite(g.low), "high": _finite(g.high)}

        return {"vs_patent": gap("patent"), "vs_best_single": gap(best)}

    def result(self) -> dict:
        labels = self.labels
        nochange = np.array([i > 0 and labels[i] == labels[i - 1] for i in range(len(labels))], dtype=bool)
        p_nc = float(nochange.mean()) if len(labels) else 0.0
        systems = {}
        correct = self.system_correct()
        for name, arr in correct.items():
            acc = float(arr.mean()) if len(arr) else 0.0
            kappa = (acc - p_nc) / (1.0 - p_nc) if p_nc < 1.0 else 0.0
            systems[name] = {"accuracy": round(acc, 6), "kappa_temporal": round(kappa, 6)}
        eps = [a.ledger.max_loss for agents in self.agents.values() for a in agents]
        return {
            "n": self.t,
            "seed": self.cfg.seed,
            "systems": systems,
            "drift": {
                "triggers": [tr["position"] for tr in self.triggers],
                "sources": [tr["source"] for tr in self.triggers],
            },
            "hpo": {"rounds": len(self.hpo_rounds)},
            "shadow": {
                "promotions": len(self.promotions),
                "rejections": len(self.rejections),
                "promoted": [{k: p[k] for k in ("model", "position", "config")} for p in self.promotions],
            },
            "privacy": {
                "epsilon_spent_max": round(max(eps, default=0.0), 6),
                "epsilon_budget": self.cfg.epsilon_budget,
            },
            "comparison": self.comparison(correct) if self.t else {},
            "routing": {
                "final_weights": {
                    m: round(w, 4) for m, w in (self.weights_log[-1][1] if self.weights_log else {}).items()
                },
                "pruned": dict(self.pruned),
            },
        }


def _finite(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


def run(rows: Iterable[tuple[list[float], int]], config: SimConfig, feature_names=None, progress=None) -> Simulation:
    sim = Simulation(config, feature_names)
    for x, y in rows:
        sim.step(x, y)
        if progress is not None:
            progress.update(1)
    return sim


def format_table(result: dict, elapsed: float) -> str:
    lines = [f"{'system':<18} {'accuracy':>9} {'kappa_t':>9}"]
    for name, s in sorted(result["systems"].items(), key=lambda kv: -kv[1]["accuracy"]):
        lines.append(f"{name:<18} {s['accuracy'] * 100:>8.2f}% {s['kappa_temporal']:>9.3f}")
    lines += [
        "",
        f"events {result['n']}, seed {result['seed']}, {elapsed:.1f}s",
        f"drift triggers at {result['drift']['triggers']}",
        f"HPO rounds {result['hpo']['rounds']}; shadows promoted {result['shadow']['promotions']}, "
        f"rejected {result['shadow']['rejections']}",
        f"privacy: max ε per record {result['privacy']['epsilon_spent_max']:.2f} "
        f"of {result['privacy']['epsilon_budget']:g}",
        f"final weights {result['routing']['final_weights']}",
    ]
    for c in result["comparison"].values():
        ci = "" if c["low"] is None else f", 95% CI ({c['low'] * 100:+.2f}, {c['high'] * 100:+.2f})"
        lines.append(f"fedrift - {c['against']}: {c['gap'] * 100:+.2f} points{ci}")
    if result["routing"]["pruned"]:
        lines.append(f"pruned {result['routing']['pruned']}")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else str(v))


def timed_run(rows, config, feature_names=None, progress=None) -> tuple[Simulation, float]:
    t0 = time.perf_counter()
    sim = run(rows, config, feature_names, progress)
    return sim, time.perf_counter() - t0

"""``fedrift simulate``: the pipeline's own stages in one process (``fedrift.inmemory``), no Kafka,
deterministic for a seed, beside the baselines measured on the same events:

* ``patent``: weights ∝ historical (windowed) accuracy, deficit routing, no HPO (US11170309);
* ``uniform``: equal weights, deficit routing;
* ``model:<id>``: one pool member alone, default configuration, learning the whole stream;
* ``oracle_window``: the best pool member of each 500-event window, chosen in hindsight.

``fedrift`` is what the pipeline serves: each model's replicas learn the shard of the stream
their partitions carry, the controller re-weights on its tick, HPO rounds run on the hosts' local
windows, shadows are tested on a slice of traffic. The baselines' models learn every event.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fedrift.config import Settings
from fedrift.core.metrics import WindowedMean, paired_gap
from fedrift.core.models import FAMILIES
from fedrift.core.router import DeficitRouter
from fedrift.inmemory import InMemoryPipeline, PipelineConfig


@dataclass(frozen=True)
class SimConfig:
    pipeline: PipelineConfig
    accuracy_window: int = 500  # the patent's historical-accuracy window
    oracle_window: int = 500
    run_id: str = "sim"  # request i is "<run_id>-<i>", as ``fedrift run`` names them: the same partitions

    @classmethod
    def from_settings(cls, settings: Settings, run_id: str = "sim", **overrides) -> SimConfig:
        """The pipeline ``fedrift run`` starts with these settings; ``overrides`` replace fields."""
        values = {
            "pool": settings.models,
            "replicas": settings.replicas,
            "n_features": settings.n_features,
            "shared_training": settings.shared_training,
            "partitions": settings.partitions,
            "seed": settings.seed,
            "shadow_fraction": settings.shadow_fraction,
            "status_every": settings.status_every,
            "pending_labels": settings.pending_labels,
            "shadow_min": settings.shadow_min_samples,
            "shadow_max": settings.shadow_max_samples,
            "epsilon_budget": settings.epsilon_budget,
            "cold_start_at": settings.cold_start_hpo_at,
            "hpo_round_timeout_s": settings.hpo_round_timeout_s,
            "warm_start": settings.warm_start,
            "drift": settings.drift,
            "fhpo": settings.fhpo,
            "routing": settings.routing,
            "replica": settings.replica,
            "controller": settings.controller,
        }
        return cls(PipelineConfig(**{**values, **overrides}), run_id=run_id)

    @property
    def models(self) -> tuple[str, ...]:
        return self.pipeline.pool


class Simulation:
    def __init__(self, config: SimConfig, feature_names: list[str] | None = None) -> None:
        self.cfg = cfg = config
        self.pipeline = InMemoryPipeline(cfg.pipeline, feature_names)
        seed = cfg.pipeline.seed
        self.static = {m: self.pipeline.baseline_copy(m, FAMILIES[m].build(FAMILIES[m].defaults, seed=seed))
                       for m in cfg.models}
        self.static_acc = {m: WindowedMean(cfg.accuracy_window) for m in cfg.models}
        uniform = {m: 1.0 for m in cfg.models}
        self.routers = {"patent": DeficitRouter(uniform), "uniform": DeficitRouter(uniform)}
        self.correct: dict[str, list[bool]] = {k: [] for k in ("fedrift", "patent", "uniform")}
        self.correct.update({f"model:{m}": [] for m in cfg.models})
        self.labels: list = []
        self.t = 0

    def step(self, x: list[float], y) -> None:
        # the baselines first: their models, shared with the replicas' (``fedrift.sharing``), then
        # stay level with or ahead of the replicas, and a line forks only for a member left behind
        static_pred = {m: model.predict_one(x) for m, model in self.static.items()}
        for m, pred in static_pred.items():
            self.static[m].learn_one(x, y)
            self.static_acc[m].update(float(pred == y))
        served = self.pipeline.request(f"{self.cfg.run_id}-{self.t}", x, y)
        prediction = served[1] if served else None
        self.t += 1
        self.correct["fedrift"].append(prediction == y)
        self.correct["patent"].append(static_pred[self.routers["patent"].choose()] == y)
        self.correct["uniform"].append(static_pred[self.routers["uniform"].choose()] == y)
        for m, pred in static_pred.items():
            self.correct[f"model:{m}"].append(pred == y)
        self.labels.append(y)
        if self.t % 50 == 0:
            self.routers["patent"].set_weights({m: max(a.mean, 1e-6) for m, a in self.static_acc.items()})

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
        pipe = self.pipeline
        pipe.settle()
        # a record of replica r's partitions is scored by every model's replica r: losses add up
        eps = [sum(rounds[r].agent.ledger.max_loss for rounds in pipe.rounds.values())
               for r in range(self.cfg.pipeline.replicas)]
        triggers = [d for d in pipe.log["drift"] if d["drifted"]]
        decided = [d for d in pipe.log["deployments"] if d["action"] in ("PROMOTE", "REJECT")]
        promoted = [d for d in decided if d["action"] == "PROMOTE"]
        weights = pipe.log["weights"][-1][1] if pipe.log["weights"] else None
        return {
            "n": self.t,
            "seed": self.cfg.pipeline.seed,
            "systems": systems,
            "drift": {"triggers": [d["position"] for d in triggers], "sources": [d["source"] for d in triggers]},
            "hpo": {"rounds": len(pipe.log["triggers"]), "aggregates": len(pipe.log["aggregates"])},
            "shadow": {
                "promotions": len(promoted),
                "rejections": len(decided) - len(promoted),
                "promoted": [{"model": d["model"], "config": json.loads(d["config_json"])} for d in promoted],
            },
            "privacy": {
                "epsilon_spent_max": round(max(eps, default=0.0), 6),
                "epsilon_budget": self.cfg.pipeline.epsilon_budget,
            },
            "comparison": self.comparison(correct) if self.t else {},
            "routing": {
                "versions": len(pipe.log["weights"]),
                "final_weights": {m: round(w, 4) for m, w in (weights["weights"] if weights else {}).items()},
                "pruned": dict(pipe.controller.pruned),
            },
        }


def _finite(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


def run(rows: Iterable[tuple[list[float], int]], config: SimConfig, feature_names=None, progress=None) -> Simulation:
    sim = Simulation(config, feature_names)
    try:
        for x, y in rows:
            sim.step(x, y)
            if progress is not None:
                progress.update(1)
    except BaseException:
        sim.pipeline.cancel_rounds()
        raise
    return sim


def format_table(result: dict, elapsed: float) -> str:
    lines = [f"{'system':<32} {'accuracy':>9} {'kappa_t':>9}"]
    for name, s in sorted(result["systems"].items(), key=lambda kv: -kv[1]["accuracy"]):
        kappa = "-" if s["kappa_temporal"] is None else f"{s['kappa_temporal']:.3f}"
        lines.append(f"{name:<32} {s['accuracy'] * 100:>8.2f}% {kappa:>9}")
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

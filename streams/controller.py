"""Routing-controller processor: the RoutingController over the hosts' ``model.status`` (windowed
quality, scored/correct counters for the Fixed Share evidence, input sketches), the current inputs,
and ``drift.signals``; publishes
``routing.weights`` and, from ``hpo.aggregates``, SHADOW_START deployments (PRUNE / RESTORE too)."""

from __future__ import annotations

import logging

import faust

from fedrift.config import Settings
from fedrift.core.models import FAMILIES, config_id
from fedrift.core.routing import InputSketch, RoutingController, drift_compensation
from fedrift.kafka_io import read_compacted
from fedrift.topics import (
    DEPLOYMENTS,
    DRIFT_SIGNALS,
    HPO_AGGREGATES,
    MODEL_STATUS,
    REQUESTS,
    ROUTING_WEIGHTS,
    TopicCatalog,
    deployments_in_force,
)
from streams.app import RawTopics, decoded, now_ms, send, send_deployment

log = logging.getLogger(__name__)


class ControllerState:
    """What the controller knows; rebuilt from the compacted topics at start."""

    def __init__(self, settings: Settings, catalog: TopicCatalog) -> None:
        self.settings = settings
        self.controller = RoutingController()
        self.status: dict[str, dict] = {}  # host -> latest ModelStatus
        self.batch: dict[str, list[int]] = {}  # model -> [correct, scored] since the last observe
        self.current = InputSketch(half_life=250)
        self.production = {m: config_id(FAMILIES[m].defaults) for m in settings.models if m in FAMILIES}
        self.shadows: set[str] = set()
        self.before_drift: dict[str, float] | None = None
        self.last_accuracy: dict[str, float] = {}
        self.last_published: dict[str, float] = {}
        self.pruned: dict[str, str] = {}
        state = read_compacted(settings.bootstrap, catalog.name(ROUTING_WEIGHTS)).get("weights")
        if state:
            self.controller.version = state["version"]
            self.last_published = dict(state["weights"])
            self.controller.evidence.restore({m: state["historical"].get(m, 0.0) for m in settings.models})
        for d in deployments_in_force(read_compacted(settings.bootstrap, catalog.name(DEPLOYMENTS)).values()):
            self.apply_deployment(d)
        self.status.update(read_compacted(settings.bootstrap, catalog.name(MODEL_STATUS)))

    def apply_status(self, s: dict) -> None:
        """Keep the host's latest report; add what it scored since its previous one to the batch."""
        prev = self.status.get(s["host"])
        self.status[s["host"]] = s
        if prev is None or s["n_seen"] < prev["n_seen"] or s["n_correct"] < prev["n_correct"]:
            return  # first report, or counters restarted: a new baseline
        batch = self.batch.setdefault(s["model"], [0, 0])
        batch[0] += s["n_correct"] - prev["n_correct"]
        batch[1] += s["n_seen"] - prev["n_seen"]

    def observe_batch(self) -> None:
        """Feed the controller once every model has been scored on new events. Replicas report on
        their own schedules, so each model's batch covers about the same events; the smallest
        batch size counts as the number of events (the conservative step)."""
        models = [m for m in self.settings.models if m in FAMILIES]
        if not models or any(self.batch.get(m, [0, 0])[1] == 0 for m in models):
            return
        n = min(self.batch[m][1] for m in models)
        self.controller.observe({m: self.batch[m][0] / self.batch[m][1] for m in models}, n)
        self.batch.clear()

    def apply_deployment(self, d: dict) -> None:
        if d["action"] == "SHADOW_START":
            self.shadows.add(d["model"])
        elif d["action"] == "PROMOTE":
            self.production[d["model"]] = d["config_id"]
            self.shadows.discard(d["model"])
        elif d["action"] == "REJECT":
            self.shadows.discard(d["model"])
        elif d["action"] == "PRUNE":
            self.pruned[d["model"]] = self.controller.pruned[d["model"]] = d["reason"]
        elif d["action"] == "RESTORE":
            self.pruned.pop(d["model"], None)
            self.controller.pruned.pop(d["model"], None)

    def accuracy(self) -> dict[str, float] | None:
        per_model: dict[str, list[tuple[float, int]]] = {}
        for s in self.status.values():
            if s["model"] in self.settings.models:
                per_model.setdefault(s["model"], []).append((s["window_quality"], max(s["n_seen"], 1)))
        if set(per_model) != set(self.settings.models):
            return None  # wait until every model has reported once
        return {m: sum(q * n for q, n in v) / sum(n for _, n in v) for m, v in per_model.items()}

    def alignment(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for s in self.status.values():
            if s["model"] in self.settings.models:
                out.setdefault(s["model"], []).append(InputSketch.from_list(s["input_sketch"]).similarity(self.current))
        return {m: sum(v) / len(v) for m, v in out.items()}

    def drift_compensation(self, acc: dict[str, float]) -> dict[str, float]:
        return drift_compensation(acc, self.before_drift)


async def publish_weights(topics: RawTopics, catalog: TopicCatalog, partitions: int, record: dict) -> None:
    """Put new weights in force: a marker in every partition of ``inference.requests`` (where the
    hosts route by them, each from that point of its partition on), then ``routing.weights`` for
    clients and restarts. A marker lost in a crash is repeated by the next publication."""
    for p in range(partitions):
        await send(topics, catalog.name(REQUESTS), "RoutingWeights", record, "weights", partition=p)
    await send(topics, catalog.name(ROUTING_WEIGHTS), "RoutingWeights", record, "weights")


def register_controller(app: faust.App, settings: Settings, catalog: TopicCatalog, interval_s: float = 2.0):
    topics = RawTopics(app, catalog)
    state = ControllerState(settings, catalog)

    @app.agent(topics.get(catalog.name(MODEL_STATUS)), name="controller-status")
    async def follow_status(stream):
        async for _event, s in decoded(stream, topics, "ModelStatus", "controller", owner=False):
            state.apply_status(s)

    @app.agent(topics.get(catalog.name(REQUESTS)), name="controller-inputs")
    async def follow_inputs(stream):
        async for _event, r in decoded(stream, topics, "InferenceRequest", "controller", owner=False):
            state.current.add(r["features"])

    @app.agent(topics.get(catalog.name(DRIFT_SIGNALS)), name="controller-drift")
    async def follow_drift(stream):
        async for _event, s in decoded(stream, topics, "DriftSignal", "controller"):
            if s["drifted"] and state.last_accuracy:
                state.before_drift = dict(state.last_accuracy)

    @app.agent(topics.get(catalog.name(DEPLOYMENTS)), name="controller-deployments")
    async def follow_deployments(stream):
        async for _event, d in decoded(stream, topics, "Deployment", "controller", owner=False):
            state.apply_deployment(d)

    @app.agent(topics.get(catalog.name(HPO_AGGREGATES)), name="controller-aggregates")
    async def follow_aggregates(stream):
        async for _event, a in decoded(stream, topics, "AggregateResult", "controller"):
            if a["model"] in state.shadows or a["model"] not in state.production:
                continue
            prod = next((e for e in a["leaderboard"] if e["config_id"] == state.production[a["model"]]), None)
            if a["best_config_id"] == state.production[a["model"]] or (prod and prod["score"] >= a["score"]):
                continue
            state.shadows.add(a["model"])
            await send_deployment(
                topics,
                {
                    "model": a["model"],
                    "action": "SHADOW_START",
                    "config_id": a["best_config_id"],
                    "config_json": a["best_config_json"],
                    "round_id": a["round_id"],
                    "time": now_ms(),
                    "reason": f"HPO {a['round_id']}: {a['score']:.3f}±{a['score_std']:.3f} beats production",
                    "evidence": {
                        "score": a["score"],
                        "score_std": a["score_std"],
                        "production_score": prod["score"] if prod else -1.0,
                    },
                },
            )

    @app.timer(interval_s)
    async def reweight():
        acc = state.accuracy()
        if acc is None:
            return
        state.last_accuracy = acc
        state.observe_batch()
        decision = state.controller.update(acc, state.alignment(), state.drift_compensation(acc))
        for model in set(decision.pruned) ^ set(state.pruned):
            pruned = model in decision.pruned
            await send_deployment(
                topics,
                {
                    "model": model,
                    "action": "PRUNE" if pruned else "RESTORE",
                    "config_id": state.production[model],
                    "config_json": "",
                    "time": now_ms(),
                    "reason": decision.pruned.get(model, "quality recovered"),
                    "evidence": {"accuracy": acc[model], "best": max(acc.values())},
                },
            )
        state.pruned = dict(decision.pruned)
        changed = any(abs(decision.weights[m] - state.last_published.get(m, -1.0)) > 1e-3 for m in decision.weights)
        if not changed:
            state.controller.version -= 1  # nothing published: keep versions dense
            return
        state.last_published = dict(decision.weights)
        record = {
            "version": decision.version,
            "time": now_ms(),
            "weights": decision.weights,
            "historical": decision.historical,
            "alignment": decision.alignment,
            "drift_compensation": decision.drift_compensation,
            "pruned": [{"model": m, "reason": r} for m, r in decision.pruned.items()],
        }
        await publish_weights(topics, catalog, settings.partitions, record)

    return state

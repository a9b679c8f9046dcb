"""Shadow-evaluator processor: the ShadowEvaluator over ``shadow.results``; publishes PROMOTE or
REJECT (with the evidence) to ``deployments``."""

from __future__ import annotations

import logging

import faust

from fedrift.config import Settings
from fedrift.core.shadow import ShadowEvaluator
from fedrift.kafka_io import read_compacted
from fedrift.topics import DEPLOYMENTS, SHADOW_RESULTS, TopicCatalog, deployments_in_force
from streams.app import RawTopics, decoded, now_ms, send_deployment

log = logging.getLogger(__name__)


class ShadowBook:
    """One evaluator per model with a running shadow; started by SHADOW_START deployments."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active: dict[str, tuple[dict, ShadowEvaluator, set[str]]] = {}

    def apply(self, d: dict) -> None:
        if d["action"] == "SHADOW_START":
            ev = ShadowEvaluator(
                min_samples=self.settings.shadow_min_samples, max_samples=self.settings.shadow_max_samples
            )
            self.active[d["model"]] = (d, ev, set())
        elif d["action"] in ("PROMOTE", "REJECT"):
            self.active.pop(d["model"], None)


def register_shadow(app: faust.App, settings: Settings, catalog: TopicCatalog) -> ShadowBook:
    topics = RawTopics(app, catalog)
    book = ShadowBook(settings)
    for d in deployments_in_force(read_compacted(settings.bootstrap, catalog.name(DEPLOYMENTS)).values()):
        book.apply(d)

    @app.agent(topics.get(catalog.name(DEPLOYMENTS)), name="shadow-deployments")
    async def follow(stream):
        async for _event, d in decoded(stream, topics, "Deployment", "shadow"):
            book.apply(d)

    @app.agent(topics.get(catalog.name(SHADOW_RESULTS)), name="shadow-evaluator")
    async def evaluate(stream):
        async for _event, r in decoded(stream, topics, "ShadowResult", "shadow"):
            if r["label"] is None or r["model"] not in book.active:
                continue
            start, ev, seen = book.active[r["model"]]
            if r["request_id"] in seen or r["shadow_config_id"] != start["config_id"]:
                continue
            seen.add(r["request_id"])
            decision = ev.update(r["production_prediction"] == r["label"], r["shadow_prediction"] == r["label"])
            if decision is None:
                continue
            book.active.pop(r["model"], None)
            await send_deployment(
                topics,
                {
                    "model": r["model"],
                    "action": decision.action.upper(),
                    "config_id": start["config_id"],
                    "config_json": start["config_json"],
                    "round_id": start["round_id"],
                    "time": now_ms(),
                    "reason": decision.reason,
                    "evidence": {k: float(v) for k, v in decision.evidence.items()},
                },
            )
            log.info("shadow %s for %s: %s (%s)", start["config_id"], r["model"], decision.action, decision.reason)

    return book

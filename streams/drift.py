"""Drift-analyzer processor: the DriftAnalyzer over ``inference.requests`` (input drift) and the
hosts' error-drift flags on ``model.status`` (concept drift); publishes ``drift.signals`` after
every window and ``hpo.triggers`` when the trigger policy fires."""

from __future__ import annotations

import logging
import uuid

import faust

from fedrift.config import Settings
from fedrift.core.drift import DriftAnalyzer, DriftConfig, DriftReport
from fedrift.topics import DRIFT_SIGNALS, HPO_TRIGGERS, MODEL_STATUS, REQUESTS, TopicCatalog
from streams.app import RawTopics, decoded, now_ms, send

log = logging.getLogger(__name__)


def register_drift(app: faust.App, settings: Settings, catalog: TopicCatalog, config: DriftConfig | None = None):
    topics = RawTopics(app, catalog)
    analyzer = DriftAnalyzer(config or DriftConfig(), seed=settings.seed)
    name = f"{settings.topic_prefix}drift-analyzer"

    async def publish(report: DriftReport) -> None:
        await send(
            topics,
            catalog.name(DRIFT_SIGNALS),
            "DriftSignal",
            {
                "analyzer": name,
                "time": now_ms(),
                "position": report.position,
                "score": report.score,
                "threshold": report.threshold if report.threshold < float("inf") else -1.0,
                "drifted": report.triggered,
                "source": report.source,
                "components": report.components,
                "top_features": [{"feature": f, "shift": s} for f, s in report.top_features],
            },
            name,
        )
        if report.triggered:
            round_id = f"round-{report.position}-{uuid.uuid4().hex[:6]}"
            await send(
                topics,
                catalog.name(HPO_TRIGGERS),
                "HpoTrigger",
                {
                    "round_id": round_id,
                    "time": now_ms(),
                    "reason": f"{report.source} drift",
                    "drift_score": report.score,
                    "models": [],
                },
                "*",
            )
            log.info("drift at %d (%s, score %.2f): HPO %s", report.position, report.source, report.score, round_id)

    @app.agent(topics.get(catalog.name(REQUESTS)), name="drift-inputs")
    async def inputs(stream):
        async for _event, request in decoded(stream, topics, "InferenceRequest", "drift", owner=False):
            report = analyzer.update(request["features"])
            if report is not None:
                await publish(report)

    @app.agent(topics.get(catalog.name(MODEL_STATUS)), name="drift-outcomes")
    async def outcomes(stream):
        async for _event, status in decoded(stream, topics, "ModelStatus", "drift"):
            if not status["error_drift"]:
                continue
            await publish(analyzer.outcome_drift({"error_drift_host": 1.0, "window_quality": status["window_quality"]}))

    return analyzer

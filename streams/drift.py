"""Drift-analyzer processor (the Faust drift agent): the ``DriftStage`` over ``inference.requests``
(input drift) and the hosts' error-drift flags on ``model.status`` (concept drift)."""

from __future__ import annotations

import uuid

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.drift import DriftAnalyzer, DriftConfig
from fedrift.core.drift_stage import DriftStage
from fedrift.topics import MODEL_STATUS, REQUESTS, TopicCatalog
from streams.app import RawTopics, decoded, decoded_batches, now_ms, send_outputs


def register_drift(
    app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection, config: DriftConfig | None = None
):
    topics = RawTopics(app, catalog)
    analyzer = DriftAnalyzer(config or settings.drift, seed=settings.seed)
    stage = DriftStage(analyzer, f"{settings.topic_prefix}drift-analyzer", round_prefix=f"round-{uuid.uuid4().hex[:6]}",
                       cold_start_at=settings.cold_start_hpo_at)

    @app.agent(topics.get(catalog.name(REQUESTS)), name="drift-inputs")
    async def inputs(stream):
        async for batch in decoded_batches(stream, "InferenceRequest"):
            for request in batch:
                await send_outputs(topics, stage.on_request(request["features"], now_ms(), request["event_time"]))

    @app.agent(topics.get(catalog.name(MODEL_STATUS)), name="drift-outcomes")
    async def outcomes(stream):
        async for _event, status in decoded(stream, topics, "ModelStatus", "drift", owner=False):
            await send_outputs(topics, stage.on_status(status, now_ms()))

    @app.timer(1.0)
    async def release_held_flags():
        await send_outputs(topics, stage.tick(now_ms()))

    return analyzer

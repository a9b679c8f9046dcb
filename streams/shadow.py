"""Shadow-evaluator processor: the ``ShadowStage`` over ``shadow.results`` and ``deployments``;
publishes PROMOTE or REJECT (with the evidence) to ``deployments``."""

from __future__ import annotations

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.lifecycle import usable, validate_deployment
from fedrift.core.shadow_stage import ShadowStage, validate_result
from fedrift.kafka_io import read_compacted
from fedrift.topics import DEPLOYMENTS, SHADOW_RESULTS, TopicCatalog, deployments_in_force
from streams.app import RawTopics, decoded, now_ms, send_outputs


def register_shadow(app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection) -> ShadowStage:
    topics = RawTopics(app, catalog)
    restored = usable(deployments_in_force(read_compacted(conn, catalog.name(DEPLOYMENTS)).values()))
    stage = ShadowStage(
        min_samples=settings.shadow_min_samples, max_samples=settings.shadow_max_samples, deployments=restored
    )

    @app.agent(topics.get(catalog.name(DEPLOYMENTS)), name="shadow-deployments")
    async def follow(stream):
        async for _event, d in decoded(stream, topics, "Deployment", "shadow", validate_deployment, owner=False):
            stage.on_deployment(d)

    @app.agent(topics.get(catalog.name(SHADOW_RESULTS)), name="shadow-evaluator")
    async def evaluate(stream):
        async for _event, r in decoded(stream, topics, "ShadowResult", "shadow", validate_result):
            await send_outputs(topics, stage.on_result(r, now_ms()))

    return stage

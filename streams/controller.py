"""Routing-controller processor: the ``Controller`` over ``model.status``, the current inputs,
``drift.signals``, ``hpo.aggregates`` and ``deployments``. It publishes new routing weights (a
marker into every request partition, then ``routing.weights``) and PRUNE / RESTORE deployments
whenever every model has new evidence (or on the clock when none came for a while), and from
aggregates SHADOW_START deployments. Its state is restored from the
compacted topics at start; a status that fails validation goes to ``model.status.dlq``."""

from __future__ import annotations

import logging

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.controller import Controller, ControllerConfig, validate_aggregate, validate_status
from fedrift.core.lifecycle import usable, validate_deployment
from fedrift.core.partition import validated_weights
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
from schemas import InvalidRecord
from streams.app import RawTopics, decoded, decoded_batches, now_ms, send_outputs

log = logging.getLogger(__name__)


def restored_controller(settings: Settings, catalog: TopicCatalog, conn: Connection) -> Controller:
    """The controller as the compacted topics leave it (an unusable weights record is skipped)."""
    read = lambda base: read_compacted(conn, catalog.name(base))  # noqa: E731
    weights = read(ROUTING_WEIGHTS).get("weights")
    try:
        if weights:
            validated_weights(weights, settings.models)
    except InvalidRecord as exc:
        log.warning("stored routing weights skipped: %s", exc.reason)
        weights = None
    statuses = []
    for s in read(MODEL_STATUS).values():
        try:
            validate_status(s)
            statuses.append(s)
        except InvalidRecord:
            continue
    return Controller(
        ControllerConfig(pool=settings.models, partitions=settings.partitions, routing=settings.routing,
                         tuning=settings.controller),
        weights=weights,
        deployments=usable(deployments_in_force(read(DEPLOYMENTS).values())),
        statuses=statuses,
    )


def register_controller(
    app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection, interval_s: float = 1.0
):
    topics = RawTopics(app, catalog)
    ctl = restored_controller(settings, catalog, conn)

    @app.agent(topics.get(catalog.name(MODEL_STATUS)), name="controller-status")
    async def follow_status(stream):
        async for _event, s in decoded(stream, topics, "ModelStatus", "controller", validate_status):
            await send_outputs(topics, ctl.on_status(s, now_ms()))

    @app.agent(topics.get(catalog.name(REQUESTS)), name="controller-inputs")
    async def follow_inputs(stream):
        async for batch in decoded_batches(stream, "InferenceRequest"):
            for r in batch:
                ctl.on_request(r["features"])

    @app.agent(topics.get(catalog.name(DRIFT_SIGNALS)), name="controller-drift")
    async def follow_drift(stream):
        async for _event, s in decoded(stream, topics, "DriftSignal", "controller"):
            ctl.on_drift(s)

    @app.agent(topics.get(catalog.name(DEPLOYMENTS)), name="controller-deployments")
    async def follow_deployments(stream):
        async for _event, d in decoded(stream, topics, "Deployment", "controller", validate_deployment, owner=False):
            ctl.on_deployment(d)

    @app.agent(topics.get(catalog.name(HPO_AGGREGATES)), name="controller-aggregates")
    async def follow_aggregates(stream):
        async for _event, a in decoded(stream, topics, "AggregateResult", "controller", validate_aggregate):
            await send_outputs(topics, ctl.on_aggregate(a, now_ms()))

    @app.timer(interval_s)
    async def reweight():
        await send_outputs(topics, ctl.tick(now_ms()))

    return ctl

"""Aggregator processor: the ``RoundBook`` over ``hpo.metrics`` (metrics and unmasking shares),
publishing ``hpo.aggregates`` and ``UnmaskRequest`` on ``hpo.triggers``; a metric that fails
validation (zero slice, non-finite value, malformed configuration) goes to ``hpo.metrics.dlq``."""

from __future__ import annotations

import time
from typing import Any

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.aggregator import RoundBook, validate_metric, validate_share
from fedrift.core.fhpo import FhpoConfig
from fedrift.topics import HPO_METRICS, TopicCatalog
from streams.app import RawTopics, decoded_records, now_ms, send_outputs


def _validate(value: Any) -> None:
    if "seed_shares" in value:  # an UnmaskShare
        validate_share(value)
    else:
        validate_metric(value)


def register_aggregator(
    app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection, fhpo: FhpoConfig | None = None
):
    topics = RawTopics(app, catalog)
    fh = fhpo or settings.fhpo
    book = RoundBook(settings.replicas, 1 + fh.n_shared + fh.n_local, settings.hpo_round_timeout_s,
                     threshold=fh.min_survivors)
    records = ("TrialMetric", "UnmaskShare")

    @app.agent(topics.get(catalog.name(HPO_METRICS)), name="aggregator")
    async def aggregate(stream):
        async for _event, name, value in decoded_records(stream, topics, records, "aggregator", _validate):
            out = book.on_share(value) if name == "UnmaskShare" else book.on_metric(value, time.monotonic(), now_ms())
            await send_outputs(topics, out)

    @app.timer(1.0)
    async def close_late_rounds():
        await send_outputs(topics, book.tick(time.monotonic(), now_ms()))

    return book

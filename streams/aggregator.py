"""Aggregator processor: the ``RoundBook`` over ``hpo.metrics`` (metrics and unmasking shares),
publishing ``hpo.aggregates`` and ``UnmaskRequest`` on ``hpo.triggers``; a metric that fails
validation (zero slice, non-finite value, malformed configuration, not signed by its agent's
pinned key) goes to ``hpo.metrics.dlq``. The hosts' keys come from ``hpo.keys``: what it holds at
start-up is read before the first metric, later keys as they come."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.aggregator import RoundBook, validate_metric, validate_share
from fedrift.core.fhpo import FhpoConfig
from fedrift.kafka_io import read_compacted
from fedrift.topics import HPO_KEYS, HPO_METRICS, TopicCatalog
from streams.app import RawTopics, decoded_records, now_ms, send_outputs

log = logging.getLogger(__name__)


def register_aggregator(
    app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection, fhpo: FhpoConfig | None = None
):
    topics = RawTopics(app, catalog)
    fh = fhpo or settings.fhpo
    book = RoundBook(settings.replicas, 1 + fh.n_shared + fh.n_local, settings.hpo_round_timeout_s,
                     threshold=fh.min_survivors)
    for value in read_compacted(conn, catalog.name(HPO_KEYS)).values():
        if "signing_key" in value:  # an AgentKey (round keys are the hosts' business)
            _pin(book, value)
    records = ("TrialMetric", "UnmaskShare")

    def validate(value: Any) -> None:
        if "seed_shares" in value:
            validate_share(value)
            book.authenticate("UnmaskShare", value)
        else:
            validate_metric(value)
            book.authenticate("TrialMetric", value)

    @app.agent(topics.get(catalog.name(HPO_METRICS)), name="aggregator")
    async def aggregate(stream):
        async for _event, name, value in decoded_records(stream, topics, records, "aggregator", validate):
            out = book.on_share(value) if name == "UnmaskShare" else book.on_metric(value, time.monotonic(), now_ms())
            await send_outputs(topics, out)

    @app.agent(topics.get(catalog.name(HPO_KEYS)), name="aggregator-keys")
    async def pin_keys(stream):
        async for _event, _name, value in decoded_records(stream, topics, ("AgentKey",), "aggregator", owner=False):
            _pin(book, value)

    @app.timer(1.0)
    async def close_late_rounds():
        await send_outputs(topics, book.tick(time.monotonic(), now_ms()))

    return book


def _pin(book: RoundBook, key: Any) -> None:
    refused = book.on_key(key)
    if refused:
        log.warning("aggregator: %s", refused)

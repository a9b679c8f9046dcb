"""Aggregator processor: the ``RoundBook`` over ``hpo.metrics`` (metrics and unmasking shares),
publishing ``hpo.aggregates`` and ``UnmaskRequest`` on ``hpo.triggers``; a metric that fails
validation (zero slice, non-finite value, malformed configuration, not signed by its agent's
pinned key, of a round no trigger started) goes to ``hpo.metrics.dlq``.

The hosts' keys come from ``hpo.keys`` and the round ids from ``hpo.triggers``: what they hold at
start-up is read before the first metric, later records as they come. The keys pinned are kept on
the aggregator's disk (``FEDRIFT_HOME/aggregator``) across restarts, like a host's checkpoint:
the compacted ``hpo.keys`` keeps only the last record per host name, which any host principal
may write, so rebuilding the pins from it alone would let a key written after the genuine one win.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import faust

from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.aggregator import RoundBook, validate_metric, validate_share
from fedrift.core.fhpo import FhpoConfig
from fedrift.kafka_io import read_compacted, read_to_end
from fedrift.private_files import write_private
from fedrift.roster import roster_of
from fedrift.topics import HPO_KEYS, HPO_METRICS, HPO_TRIGGERS, TopicCatalog
from schemas import RecordError, codec
from streams.app import RawTopics, decoded_records, now_ms, send_outputs

log = logging.getLogger(__name__)


def register_aggregator(
    app: faust.App, settings: Settings, catalog: TopicCatalog, conn: Connection, fhpo: FhpoConfig | None = None
):
    topics = RawTopics(app, catalog)
    fh = fhpo or settings.fhpo
    book = RoundBook(settings.replicas, 1 + fh.n_shared + fh.n_local, settings.hpo_round_timeout_s,
                     threshold=fh.min_survivors, roster=roster_of(settings))
    pins = PinStore(settings.home / "aggregator" / f"{settings.topic_prefix}pins.json", book)
    for value in read_compacted(conn, catalog.name(HPO_KEYS)).values():
        if "signing_key" in value:  # an AgentKey (round keys are the hosts' business)
            pins.pin(value)
    for msg in read_to_end(conn, catalog.name(HPO_TRIGGERS)):
        _follow_trigger(book, msg.value())
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
            pins.pin(value)

    @app.agent(topics.get(catalog.name(HPO_TRIGGERS)), name="aggregator-triggers")
    async def follow_triggers(stream):
        async for _event, _name, value in decoded_records(stream, topics, ("HpoTrigger",), "aggregator", owner=False):
            book.on_trigger(value)

    @app.timer(1.0)
    async def close_late_rounds():
        await send_outputs(topics, book.tick(time.monotonic(), now_ms()))

    return book


def _follow_trigger(book: RoundBook, raw: bytes | None) -> None:
    """Note a trigger's round id (at start-up); anything else on the topic (unmask requests,
    records the hosts dead-letter) is not the aggregator's business."""
    try:
        _, value = codec().decode(raw, expect="HpoTrigger")
    except RecordError:
        return
    book.on_trigger(value)


class PinStore:
    """The aggregator's pinned host keys, on its disk: restored at start, rewritten on each change."""

    def __init__(self, path: Path, book: RoundBook) -> None:
        self.path, self.book = path, book
        if path.is_file():
            book.keys.restore(json.loads(path.read_text()))

    def pin(self, key: Any) -> None:
        before = self.book.keys.memory()
        refused = self.book.on_key(key)
        if refused:
            log.warning("aggregator: %s", refused)
        after = self.book.keys.memory()
        if after != before:
            write_private(self.path, json.dumps(after).encode())

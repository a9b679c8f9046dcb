"""The Faust application every fedrift stream processor runs in.

Values are raw bytes on the wire: decoding goes through ``schemas.codec`` (not Faust's own
serializers), so Faust and confluent-kafka processes read and write exactly the same records.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import RecordMetadata

from fedrift.access import faust_app_id
from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.records import Output
from fedrift.kafka_io import check_broker, dead_letter, now_ms, replication_for  # noqa: F401 (re-exported)
from fedrift.topics import TopicCatalog
from schemas import RecordError, codec

log = logging.getLogger(__name__)


def create_app(settings: Settings, conn: Connection) -> faust.App:
    """A Faust app on the configured broker, connected as ``conn``'s role (one of the
    stream-processor roles of ``fedrift.access``); at-least-once, commits only processed offsets."""
    role = conn.role
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        faust_app_id(settings.topic_prefix, role),
        broker=";".join(f"kafka://{b}" for b in conn.bootstrap.split(",")),
        broker_credentials=faust_credentials(conn),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(settings.home / "faust" / f"{settings.topic_prefix}{role}"),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=replication_for(check_broker(conn), settings.replication_factor)[0],
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger_ms=5,
    )
    return app


def faust_credentials(conn: Connection) -> faust.types.auth.CredentialsT | None:
    """The same security settings as ``conn.security``, in the form aiokafka (under Faust) takes."""
    sec = conn.security
    protocol = sec.get("security.protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=sec.get("ssl.ca.location"))
        if "ssl.certificate.location" in sec:
            context.load_cert_chain(sec["ssl.certificate.location"], sec.get("ssl.key.location"))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=sec["sasl.username"], password=sec["sasl.password"],
                                     ssl_context=context, mechanism=sec["sasl.mechanisms"])
    return faust.SSLCredentials(context)


async def decoded(stream, topics: RawTopics, record: str, consumer: str, validate=None, owner: bool = True):
    """``(event, value)`` for every event of ``stream`` that decodes (and validates) as ``record``;
    the rest are dead-lettered by the topic's owner (see ``decode_or_dead_letter``) and skipped."""
    async for event, _name, value in decoded_records(stream, topics, (record,), consumer, validate, owner):
        yield event, value


async def decoded_records(
    stream, topics: RawTopics, records: tuple[str, ...], consumer: str, validate=None, owner: bool = True
):
    """``(event, record name, value)`` for a topic that carries several records."""
    async for event in stream.events():
        decoded_ = await decode_or_dead_letter(topics, event, records, consumer, validate, owner)
        if decoded_ is not None:
            yield event, *decoded_


async def decoded_batches(stream, record: str, max_batch: int = 1000, within: float = 0.05):
    """Lists of the values of ``stream`` that decode as ``record``, up to ``max_batch`` at a time
    (fewer after ``within`` seconds). For readers that are not a topic's owner, so a record that
    does not decode (a marker, or poison the owner dead-letters) is skipped; batching spares
    Faust's per-event overhead on the busiest topic."""
    c = codec()
    async for values in stream.take(max_batch, within=within):
        batch = []
        for raw in values:
            try:
                batch.append(c.decode(raw, expect=record)[1])
            except RecordError:
                continue
        yield batch


async def send(
    topics: RawTopics, topic: str, record: str, value: Mapping[str, Any], key: str, partition: int | None = None
) -> Awaitable[RecordMetadata]:
    """Encode with the shared codec and hand the record to Faust's producer; the returned future
    is the broker's ack, to be awaited (Faust's own flush never raises, so an unchecked send could
    be lost silently)."""
    return await topics.get(topic).send(key=key.encode(), value=codec().encode(record, value), partition=partition)


async def send_outputs(topics: RawTopics, outputs: list[Output]) -> None:
    """Send what a core stage emitted, each to its catalog topic (and partition, if it names one).
    All but the last go out together and are acked together: one round trip for the lot, not one
    per record (sent one ack at a time, the controller fell behind the hosts' statuses at a cold
    start: its first weights reached the requests 3 s late on the 2-core machine). The last is
    sent only once those are acked: a weights update ends with its ``routing.weights`` record,
    which restarts restore from, so it never names a version whose markers were not written."""
    if not outputs:
        return
    *first, last = outputs
    await _acked([await _send(topics, o) for o in first])
    await _acked([await _send(topics, last)])


async def _send(topics: RawTopics, o: Output) -> Awaitable[RecordMetadata]:
    return await send(topics, topics.catalog.name(o.topic), o.record, o.value, o.key, partition=o.partition)


async def _acked(acks: list[Awaitable[RecordMetadata]]) -> None:
    """Wait for every ack; the first failure is raised once all have settled (none unretrieved)."""
    results = await asyncio.gather(*acks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]


@dataclass
class RawTopics:
    """Faust handles on catalog topics, created lazily, all carrying raw bytes."""

    app: faust.App
    catalog: TopicCatalog

    def __post_init__(self) -> None:
        self._topics: dict[str, faust.TopicT] = {}

    def get(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
        return self._topics[name]


async def decode_or_dead_letter(
    topics: RawTopics, event: faust.EventT, records: tuple[str, ...], consumer: str, validate=None, owner: bool = True
) -> tuple[str, dict] | None:
    """Decode one Faust event; on any ``RecordError`` send it to ``<topic>.dlq`` and return None.

    Returning normally lets Faust acknowledge (and later commit) the offset, so the pipeline goes on.
    Only the topic's ``owner`` (one processor per topic) dead-letters; others skip bad records, so
    a poison record lands in the DLQ exactly once.
    """
    msg = event.message
    try:
        name, value = codec().decode(msg.value, expect=records)
        if validate is not None:
            validate(value)
        return name, value
    except RecordError as exc:
        if not owner:
            return None
        dlq, raw, headers = dead_letter(
            topics.catalog, msg.topic, msg.partition, msg.offset, msg.key, msg.value, exc, consumer
        )
        log.warning("dead-lettered %s/%s/%s: %s", msg.topic, msg.partition, msg.offset, exc.reason)
        fut = await topics.get(dlq).send(key=msg.key, value=raw, headers=headers)
        await fut
        return None

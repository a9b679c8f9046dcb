"""Thin confluent-kafka wrappers shared by every process: topic creation, a checked producer,
and the dead-letter path for records a consumer cannot use.

Nothing here knows about drift, models or routing; it only moves encoded records.
"""

from __future__ import annotations

import faulthandler
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fedrift.connection import Connection
from fedrift.topics import ResolvedTopic, TopicCatalog
from schemas import RecordError, codec
from schemas.records import DeadLetter

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No broker answered at the configured bootstrap servers."""


class DeliveryFailed(RuntimeError):
    """At least one produced record was not acknowledged by the broker."""


def now_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch, the unit of every record's time field."""
    return int(time.time() * 1000)


def check_broker(conn: Connection, timeout: float = 10.0) -> int:
    """Return the number of brokers, or raise ``BrokerUnavailable`` with one clear line (a refused
    login included: a wrong password reads as an authentication error, not a timeout)."""
    errors: list[str] = []
    admin = AdminClient(conn.conf(log_level=0, error_cb=lambda e: errors.append(e.str())))
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0.5)  # serves the error callbacks
        why = next((e for e in errors if "uthenticat" in e or "SSL" in e), str(exc))
        raise BrokerUnavailable(f"no Kafka broker answered at {conn.bootstrap} as {conn.role!r} "
                                f"within {timeout:.0f}s ({why})") from None
    return len(md.brokers)


def replication_for(brokers: int, requested: int = 0) -> tuple[int, int | None]:
    """``(replication factor, min.insync.replicas)`` for a cluster of ``brokers``: an explicit
    ``requested`` factor wins; 0 means 3 on a cluster of 3 or more brokers (surviving the loss of
    one with ``acks=all``), else 1.

    >>> replication_for(1), replication_for(3), replication_for(5, requested=2)
    ((1, None), (3, 2), (2, None))
    """
    rf = requested or (3 if brokers >= 3 else 1)
    return rf, (2 if rf >= 3 else None)


def create_topics(
    conn: Connection, topics: Sequence[ResolvedTopic], timeout: float = 30.0, min_insync_replicas: int | None = None
) -> dict[str, str]:
    """Create the topics that do not exist yet; returns ``{name: "created" | "exists"}``. Idempotent.
    A topic with replication factor 0 gets the one that matches the cluster (``replication_for``)."""
    admin = AdminClient(conn.conf(log_level=0))
    md = admin.list_topics(timeout=timeout)
    existing = set(md.topics)
    result = {t.name: "exists" for t in topics if t.name in existing}
    new = []
    for t in topics:
        if t.name in existing:
            continue
        rf, isr = replication_for(len(md.brokers), t.replication_factor)
        new.append(NewTopic(t.name, t.partitions, rf, config=t.config(min_insync_replicas or isr)))
    if not new:
        return result
    for name, fut in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            fut.result()
            result[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            result[name] = "exists"
    _wait_for_leaders(admin, [t.name for t in topics], timeout)
    return result


def _wait_for_leaders(admin: AdminClient, names: Iterable[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    names = list(names)
    while True:
        md = admin.list_topics(timeout=timeout)
        missing = [
            n for n in names if n not in md.topics or any(p.leader < 0 for p in md.topics[n].partitions.values())
        ]
        if not missing or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def producer_config(conn: Connection, **overrides) -> dict:
    """Idempotent, fully-acknowledged producer settings used by every fedrift producer."""
    return conn.conf(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5, "log_level": 3, **overrides})


@dataclass
class RecordProducer:
    """Encode with the shared codec and produce; every delivery report is checked.

    ``flush()`` raises ``DeliveryFailed`` naming the first failures, so no loss is silent.
    """

    conn: Connection
    overrides: dict = field(default_factory=dict)
    delivered: int = 0
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._producer = Producer(producer_config(self.conn, **self.overrides))
        self._codec = codec()

    def send(
        self,
        topic: str,
        record: str,
        value: dict,
        key: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        self.send_raw(topic, self._codec.encode(record, value), key, headers, timestamp_ms)

    def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"headers": headers} if headers else {}
        if timestamp_ms:
            kwargs["timestamp"] = timestamp_ms
        if partition is not None:
            kwargs["partition"] = partition
        key_bytes = key.encode() if isinstance(key, str) else key
        while True:
            try:
                self._producer.produce(topic, value, key_bytes, on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.key()!r}]: {err.str()}")
        else:
            self.delivered += 1

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for every delivery report; return how many are delivered in total."""
        left = self._producer.flush(timeout)
        if left:
            raise DeliveryFailed(f"{left} record(s) still unacknowledged after {timeout:.0f}s")
        if self.failures:
            raise DeliveryFailed(f"{len(self.failures)} record(s) failed: {'; '.join(self.failures[:3])}")
        return self.delivered


DLQ_COPY_BYTES = 64 * 1024  # of a dead-lettered record's key and value
DLQ_REASON_CHARS = 2000


def dead_letter(
    catalog: TopicCatalog,
    source_topic: str | None,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    raw: bytes | None,
    error: Exception,
    consumer: str,
) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """Build the DLQ topic, the encoded DeadLetter value and its headers for one unusable record.

    The record's bytes are copied only up to ``DLQ_COPY_BYTES`` (its source position names the
    whole record): a record near the broker's size limit would otherwise make a dead letter over
    it, which the producer refuses, and the batch carrying it could never commit.
    """
    reason = error.reason if isinstance(error, RecordError) else f"{type(error).__name__}: {error}"
    reason = reason[:DLQ_REASON_CHARS]
    size = len(raw) if raw is not None else 0
    if raw is not None and size > DLQ_COPY_BYTES:
        reason += f" (record of {size} bytes; the first {DLQ_COPY_BYTES} are kept)"
        raw = raw[:DLQ_COPY_BYTES]
    key = key[:DLQ_COPY_BYTES] if key is not None else None
    source_topic, partition, offset = source_topic or "", partition if partition is not None else -1, offset or 0
    value: DeadLetter = {
        "source_topic": source_topic,
        "source_partition": partition,
        "source_offset": offset,
        "error_type": type(error).__name__,
        "error": reason,
        "consumer": consumer,
        "time": now_ms(),
        "key": key,
        "raw": raw,
    }
    headers = [
        ("fedrift.error", reason.encode()),
        ("fedrift.error.type", type(error).__name__.encode()),
        ("fedrift.source", f"{source_topic}/{partition}/{offset}".encode()),
    ]
    return catalog.dlq(source_topic), codec().encode("DeadLetter", value), headers


def read_to_end(conn: Connection, topic: str, from_ms: int | None = None, timeout: float = 10.0,
                complete: bool = False) -> Iterator:
    """Every committed message of ``topic`` (all partitions; from ``from_ms`` if given) up to the
    high watermarks seen at the start; stops early after ``timeout`` seconds without progress.

    Done when each partition's position reaches its watermark, not its last record: the last
    offset of a transactional topic is a commit marker that no consumer receives. With
    ``complete``, stopping early raises ``TimeoutError`` instead (a reader that must not act on
    a partial view: an open transaction holds the end back until it is decided)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(conn.conf(**{"group.id": conn.group("reader"), "enable.auto.commit": False,
                                     "isolation.level": "read_committed", "log_level": 3}))
    try:
        md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or (md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise KeyError(f"topic {topic!r} does not exist")
        if md.error is not None:
            raise KafkaException(md.error)  # e.g. a leader not available yet: the caller may retry
        starts, ends = [], {}
        for p in md.partitions:
            tp = TopicPartition(topic, p)
            lo, hi = retrying(lambda tp=tp: consumer.get_watermark_offsets(tp, timeout=timeout), "watermarks", 30)
            start = lo
            if from_ms is not None:
                found = consumer.offsets_for_times([TopicPartition(topic, p, from_ms)], timeout=timeout)[0].offset
                start = hi if found < 0 else found
            if start < hi:
                starts.append(TopicPartition(topic, p, start))
                ends[p] = hi
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                p, offset = msg.partition(), msg.offset()
                if msg.error() or p is None or offset is None or p not in ends:
                    continue
                deadline = time.monotonic() + timeout
                if offset + 1 >= ends[p]:
                    del ends[p]
                yield msg
            # a transactional topic ends in a commit marker, never delivered: the position passes it
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        if ends and complete:
            raise TimeoutError(f"{topic}: partitions {sorted(ends)} not read to their end within {timeout}s")
    finally:
        consumer.close()


def read_compacted(conn: Connection, topic: str, timeout: float = 10.0, complete: bool = False) -> dict[str, Any]:
    """The latest decoded value per key of a compacted state topic, read from the beginning.

    Processes call this at start-up to rebuild state (weights, deployments, ledgers) that must
    survive a restart, independent of any consumer group's committed offsets. A topic that does
    not exist reads as empty; a retriable Kafka error (no leader yet) is retried.
    """

    def read() -> dict[str, Any]:
        state: dict[str, Any] = {}
        try:
            for msg in read_to_end(conn, topic, timeout=timeout, complete=complete):
                try:
                    state[msg.key().decode()] = codec().decode(msg.value())[1]
                except (RecordError, AttributeError):
                    continue
        except KeyError:
            return {}
        return state

    return retrying(read, f"reading {topic}", within_s=60.0)


TXN_TIMEOUT_S = 30  # what each transactional call is given
TXN_HUNG_S = 45  # a transactional call still running this long ignored its timeout


@contextmanager
def exit_if_hung(seconds: float = TXN_HUNG_S) -> Iterator[None]:
    """End the process (status 1, every thread's stack on stderr) if the block runs past
    ``seconds``. librdkafka's transactional calls can ignore their timeout and wait for ever when
    the coordinator's broker dies and comes back (confluentinc/librdkafka#5456, #5511: seen here
    after SIGKILL of a broker); no call on that producer returns, so the way out is what a crash
    already does: the supervisor restarts the process from its committed state."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def retrying(call, what: str, within_s: float = 120.0, first_backoff_s: float = 0.1):
    """``call()`` until it returns, retrying a non-fatal Kafka error (not leader, not
    coordinator, coordinator loading, timeouts) with exponential backoff for up to ``within_s``
    seconds; a fatal error, or one still failing then, is raised."""
    deadline, backoff = time.monotonic() + within_s, first_backoff_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if (err is not None and err.fatal()) or time.monotonic() + backoff > deadline:
                raise
            log.info("%s failed (%s); retrying in %.1fs", what, exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

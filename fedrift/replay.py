"""Export a topic range to an Avro container file and play it back into a topic, keeping keys,
values, timestamps and headers byte for byte; at the recorded pace or as fast as possible."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import fastavro

from fedrift.connection import Connection
from fedrift.kafka_io import RecordProducer, create_topics, read_to_end
from fedrift.topics import ResolvedTopic
from schemas.codec import SCHEMA_DIR

REPLAY_SCHEMA = fastavro.parse_schema(json.loads((SCHEMA_DIR / "replay_record.avsc").read_text()))


def _records(conn: Connection, topic: str, from_ms: int | None, to_ms: int | None, timeout: float) -> Iterator[dict]:
    try:
        messages = list(read_to_end(conn, topic, from_ms, timeout))
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    for msg in messages:
        ts_type, ts = msg.timestamp()
        if to_ms is not None and ts > to_ms:
            continue
        yield {
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "timestamp": ts,
            "timestamp_type": ts_type,
            "key": msg.key(),
            "value": msg.value(),
            "headers": [{"key": k, "value": v} for k, v in (msg.headers() or [])],
        }


def export(
    conn: Connection, topic: str, path: Path, from_ms: int | None = None, to_ms: int | None = None,
    timeout: float = 10.0,
) -> int:
    """Write ``topic`` (all partitions, optionally a time range) to ``path``; returns the record count.
    Records are ordered by timestamp across partitions (per-partition order is kept)."""
    rows = sorted(
        _records(conn, topic, from_ms, to_ms, timeout), key=lambda r: (r["timestamp"], r["partition"], r["offset"])
    )
    with open(path, "wb") as fh:
        fastavro.writer(fh, REPLAY_SCHEMA, rows, codec="deflate")
    return len(rows)


def _file_records(fh: BinaryIO) -> Iterator[dict[str, Any]]:
    """The ReplayRecords of a replay file (the writer's schema is in the file)."""
    for rec in fastavro.reader(fh):
        yield cast(dict[str, Any], rec)


def play(conn: Connection, path: Path, topic: str, pace: str = "fast", speed: float = 1.0, progress=None) -> int:
    """Produce every record of ``path`` into ``topic`` with its key, value, headers and timestamp,
    into the same partition number (a missing target is created with enough partitions; an existing one
    must have at least as many).

    ``pace="recorded"`` sleeps the recorded gaps (divided by ``speed``); ``"fast"`` does not wait."""
    if pace not in ("fast", "recorded"):
        raise ValueError("pace must be 'fast' or 'recorded'")
    with open(path, "rb") as fh:
        partitions = 1 + max((rec["partition"] for rec in _file_records(fh)), default=0)
    # brokers here do not create topics on first use: create the target when it is missing
    create_topics(conn, [ResolvedTopic(topic, "replay", partitions, 0, "delete", None)])
    producer = RecordProducer(conn)
    sent, first_ts, t0 = 0, None, time.monotonic()
    with open(path, "rb") as fh:
        for rec in _file_records(fh):
            if pace == "recorded":
                first_ts = rec["timestamp"] if first_ts is None else first_ts
                ahead = (rec["timestamp"] - first_ts) / 1000.0 / speed - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            headers = [(h["key"], h["value"]) for h in rec["headers"]]
            producer.send_raw(
                topic, rec["value"], rec["key"], headers or None, rec["timestamp"], partition=rec["partition"]
            )
            sent += 1
            if progress is not None:
                progress.update(1)
    producer.flush()
    return sent

"""Produce a labelled stream into ``inference.requests`` (labels inline or late via ``inference.feedback``)."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator

from fedrift.kafka_io import RecordProducer
from fedrift.topics import FEEDBACK, REQUESTS, TopicCatalog


def request_events(
    rows: Iterable[tuple[list[float], int]], run_id: str | None = None, label_delay: int = 0
) -> Iterator[tuple[str, str, dict]]:
    """Turn ``(features, label)`` rows into ``(base topic, record, value)`` events.

    With ``label_delay=0`` the label rides on the request; otherwise the request goes out without it
    and a Feedback follows ``label_delay`` requests later (the rest are flushed at the end).

    >>> [(t, v.get("label")) for t, _, v in request_events([([1.0], 1), ([2.0], 0)], "r", 1)]
    [('inference.requests', None), ('inference.requests', None), ('inference.feedback', 1), ('inference.feedback', 0)]
    """
    run_id = run_id or uuid.uuid4().hex[:8]
    pending: deque[dict] = deque()
    for i, (x, y) in enumerate(rows):
        now = int(time.time() * 1000)
        rid = f"{run_id}-{i}"
        yield (
            REQUESTS,
            "InferenceRequest",
            {"id": rid, "event_time": now, "features": x, "label": None if label_delay else y},
        )
        if label_delay:
            pending.append({"id": rid, "label": y, "time": now})
            if len(pending) > label_delay:
                yield FEEDBACK, "Feedback", _stamp(pending.popleft())
    while pending:
        yield FEEDBACK, "Feedback", _stamp(pending.popleft())


def _stamp(feedback: dict) -> dict:
    return {**feedback, "time": int(time.time() * 1000)}


def produce(
    producer: RecordProducer,
    catalog: TopicCatalog,
    events: Iterable[tuple[str, str, dict]],
    rate: float = 0.0,
    progress=None,
) -> int:
    """Send events (at ``rate`` requests/s when > 0); returns the number of requests delivered."""
    start = time.monotonic()
    sent = 0
    for base, record, value in events:
        producer.send(catalog.name(base), record, value, key=value["id"])
        if base == REQUESTS:
            sent += 1
            if progress is not None:
                progress.update(1)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    producer.flush()
    return sent

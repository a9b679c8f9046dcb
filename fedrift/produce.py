"""Produce a labelled stream into ``inference.requests`` (labels inline or late via ``inference.feedback``).

A request's Kafka timestamp is its ``event_time``. The hosts merge their request partitions by
timestamp (``agents.alignment``), so a producer whose requests carry distinct times has them
learned in the order it sent them, the order the simulator replays; two requests of the same
millisecond in two partitions are merged in whichever order they arrive (on a paced run at 125
requests/s, 6 % of neighbouring requests shared a millisecond). A producer paced at up to 1000
requests/s therefore stamps with ``DistinctMillis``; a faster one has to accept ties.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from fedrift.kafka_io import RecordProducer
from fedrift.topics import FEEDBACK, REQUESTS, TopicCatalog

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return int(time.time() * 1000)


class DistinctMillis:
    """Wall-clock milliseconds, never the same value twice: a call within the millisecond of the
    previous one waits for the next, so the stamps stay on the wall clock (never ahead of it) and
    a stream stamped with it has one order. It caps its caller at 1000 calls/s.

    >>> clock = DistinctMillis()
    >>> stamps = [clock() for _ in range(5)]
    >>> all(a < b for a, b in zip(stamps, stamps[1:]))
    True
    """

    def __init__(self) -> None:
        self.last = -1

    def __call__(self) -> int:
        now = wall_ms()
        if now < self.last - 1000:  # the wall clock was set back: follow it rather than wait it out
            log.warning("the wall clock went back %d ms; request times follow it", self.last - now)
            self.last = now - 1
        while now <= self.last:
            time.sleep(0.0001)
            now = wall_ms()
        self.last = now
        return now


def clock_for(rate: float) -> Callable[[], int]:
    """The clock a producer paced at ``rate`` requests/s (0: as fast as it can) stamps with."""
    return DistinctMillis() if 0 < rate <= 1000 else wall_ms


def request_events(
    rows: Iterable[tuple[list[float], int]],
    run_id: str | None = None,
    label_delay: int = 0,
    clock: Callable[[], int] = wall_ms,
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
        now = clock()
        rid = f"{run_id}-{i}"
        yield (
            REQUESTS,
            "InferenceRequest",
            {"id": rid, "event_time": now, "features": x, "label": None if label_delay else y},
        )
        if label_delay:
            pending.append({"id": rid, "label": y, "time": now})
            if len(pending) > label_delay:
                # sent right after this request, stamped with its time: merged after it, not after the next
                yield FEEDBACK, "Feedback", {**pending.popleft(), "time": now}
    while pending:
        yield FEEDBACK, "Feedback", {**pending.popleft(), "time": clock()}


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
        stamp = value["event_time"] if base == REQUESTS else value.get("time")
        producer.send(catalog.name(base), record, value, key=value["id"], timestamp_ms=stamp)
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

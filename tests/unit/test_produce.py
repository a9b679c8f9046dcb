"""The producer's stamps: a request's Kafka timestamp is its event time, distinct when paced."""

from __future__ import annotations

import itertools

from fedrift.produce import DistinctMillis, clock_for, produce, request_events, wall_ms
from fedrift.topics import TopicCatalog


class CapturingProducer:
    """Stands in for ``RecordProducer``: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict, str | None, int | None]] = []

    def send(self, topic, record, value, key=None, headers=None, timestamp_ms=None) -> None:
        self.sent.append((topic, record, value, key, timestamp_ms))

    def flush(self) -> None:
        pass


def test_a_request_is_sent_with_its_event_time_as_kafka_timestamp():
    rows = [([float(i)], i % 2) for i in range(6)]
    producer = CapturingProducer()
    n = produce(producer, TopicCatalog(prefix="t."), request_events(rows, "r", label_delay=2))
    assert n == 6
    for topic, _, value, key, stamp in producer.sent:
        assert key == value["id"]
        assert stamp == (value["event_time"] if topic.endswith("inference.requests") else value["time"])


def test_a_burst_stamped_by_distinct_millis_has_one_order():
    # 200 requests at once: a wall-clock stamp gives most of them the same millisecond
    clock = DistinctMillis()
    events = list(request_events(([[0.0], 0] for _ in range(200)), "r", clock=clock))
    stamps = [v["event_time"] for _, _, v in events]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[-1] <= wall_ms()  # never ahead of the wall clock


def test_only_a_paced_producer_waits_for_distinct_stamps():
    assert isinstance(clock_for(125.0), DistinctMillis)
    assert isinstance(clock_for(1000.0), DistinctMillis)
    assert clock_for(0.0) is wall_ms  # as fast as it can: ties accepted, never capped at 1000/s
    assert clock_for(5000.0) is wall_ms


def test_a_late_label_carries_the_time_of_the_request_it_follows(monkeypatch):
    # stamped later (after the producer's pacing sleep), it would share a millisecond with the
    # next request, or pass it, and be merged after it
    monkeypatch.setattr("fedrift.produce.wall_ms", lambda: 10**12)  # "later" than any request
    ticks = iter(range(10, 10**6, 10))
    events = list(request_events(([[float(i)], 0] for i in range(20)), "r", label_delay=3, clock=lambda: next(ticks)))
    stamps = []  # (feedback time, time of the request it was sent after)
    previous = None
    for topic, _, value in events:
        if topic.endswith("inference.requests"):
            previous = value["event_time"]
        else:
            stamps.append((value["time"], previous))
    in_stream, tail = stamps[:-3], stamps[-3:]  # the last 3 labels are flushed after the stream
    assert all(t == after for t, after in in_stream) and len(in_stream) == 17
    assert all(t > after for t, after in tail)


def test_a_clock_set_back_is_followed_not_waited_out(monkeypatch):
    clock = DistinctMillis()
    now = [1_000_000]
    monkeypatch.setattr("fedrift.produce.wall_ms", lambda: now[0])
    assert clock() == 1_000_000
    now[0] = 1_000_000 - 60_000  # NTP stepped the clock back a minute
    assert clock() == 940_000  # at once, not after a minute of waiting

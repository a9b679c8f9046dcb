"""Records of several partitions handed over in time order, as the simulator replays them.

A host reads several request partitions (its own and, with shared training, its peers'). The
consumer hands records over partition by partition, in fetch-sized chunks: a host behind the
stream could learn a thousand of its own requests before its peers' requests of the same seconds,
and its models would then learn a different stream than the one the simulator replays (measured:
served accuracy 1.9 points below the simulator's on a drifting stream). Like Kafka Streams'
partition group, this buffer releases records in timestamp order, holding back a record while a
*watched* partition (the request partitions) that may still deliver an older one has not caught
up with it. Other partitions (the labels) are merged in but hold nothing back, so a label waits
for the requests older than it, its own among them:

- while the consumer has more records at hand (``drained`` false), a record is released only once
  every watched partition has delivered one at least as new (what ``safe_until`` says);
- after a short fetch (``drained``: fewer records than asked, so the consumer had no more at
  hand) a record not yet safe is still held, but for at most ``idle_ms`` of wall time (Kafka
  Streams' ``max.task.idle.ms``): a partition's older record in transit arrives within it, and
  a partition with nothing to say holds nothing back longer. With 0 everything is released;
- at most ``cap`` records are held, so an idle partition cannot stall a backlog. A record can
  therefore wait while older records of a lagging partition are fetched (that is the point: the
  older ones go first), for at most ``cap`` records.

>>> buf = TimeAligned(cap=100, idle_ms=0)
>>> buf.watch(["a", "b"])
>>> buf.add([("a", 10, "a10"), ("a", 30, "a30"), ("b", 20, "b20"), ("labels", 25, "y25")])
>>> buf.take(10, drained=False)  # b may still deliver something older than a30
['a10', 'b20']
>>> buf.take(10, drained=True)  # the label waited for the requests older than it
['y25', 'a30']
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any


class TimeAligned:
    def __init__(self, cap: int = 5000, idle_ms: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap, self.idle_s, self.clock = cap, idle_ms / 1000, clock
        self.buffers: dict[Hashable, deque[tuple[int, Any, float, bool]]] = {}  # (time, record, added, in place)
        self.latest: dict[Hashable, int] = {}  # newest timestamp each watched partition has delivered
        self.released: dict[Hashable, int] = {}  # per watched partition, the timestamp last released
        self.inversions = 0  # records released after a newer one of another partition: not the simulator's order

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def watch(self, partitions: Iterable[Hashable]) -> None:
        """The partitions whose records are merged (each one holds the others back until it has
        delivered a record, or the consumer is drained)."""
        for p in partitions:
            self.latest.setdefault(p, -(2**63))
            self.buffers.setdefault(p, deque())  # ties go to the partition watched first

    def add(self, records: Iterable[tuple[Hashable, int | None, Any]]) -> None:
        """Buffer ``(partition, timestamp, record)`` triples, each partition's in its order. A
        timestamp of None marks a record that only has a place in its partition (a routing-weights
        marker: its writer's clock says nothing about the requests around it); it goes with the
        record before it, so it holds no other partition's records back."""
        now = self.clock()
        for partition, stamp, record in records:
            timestamp = self.latest.get(partition, -(2**63)) if stamp is None else stamp
            self.buffers.setdefault(partition, deque()).append((timestamp, record, now, stamp is None))
            if partition in self.latest:
                self.latest[partition] = max(self.latest[partition], timestamp)

    def clear(self) -> None:
        """Forget everything buffered (the consumer seeks back and reads it again)."""
        self.buffers = {p: deque() for p in self.latest}
        self.latest = dict.fromkeys(self.latest, -(2**63))
        self.released.clear()

    @property
    def safe_until(self) -> int:
        """No partition can still deliver a record older than this (each delivers in order)."""
        return min(self.latest.values(), default=-(2**63))

    def take(self, limit: int, drained: bool) -> list[Any]:
        """Up to ``limit`` records in timestamp order (ties: the order of ``watch``)."""
        out: list[Any] = []
        held_since = self.clock() - self.idle_s  # a record buffered before this has waited long enough
        while len(out) < limit:
            heads = {p: b[0][0] for p, b in self.buffers.items() if b}
            if not heads:
                break
            p = min(heads, key=lambda q: heads[q])
            waited = drained and self.buffers[p][0][2] <= held_since
            if heads[p] > self.safe_until and not waited and len(self) <= self.cap:
                break
            _, record, _, in_place = self.buffers[p].popleft()
            if p in self.latest and not in_place:
                self._count_inversion(p, heads[p])
            out.append(record)
        return out

    def _count_inversion(self, p: Hashable, timestamp: int) -> None:
        """An inversion: released after a newer record of another partition (records in place,
        the markers, are not counted)."""
        others = max((t for q, t in self.released.items() if q != p), default=-(2**63))
        self.inversions += timestamp < others
        self.released[p] = max(self.released.get(p, timestamp), timestamp)

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
  hand) everything buffered is released, in order; records not fetched yet are mostly newer;
- at most ``cap`` records are held, so an idle partition cannot stall a backlog. A record can
  therefore wait while older records of a lagging partition are fetched (that is the point: the
  older ones go first), for at most ``cap`` records.

>>> buf = TimeAligned(cap=100)
>>> buf.watch(["a", "b"])
>>> buf.add([("a", 10, "a10"), ("a", 30, "a30"), ("b", 20, "b20"), ("labels", 25, "y25")])
>>> buf.take(10, drained=False)  # b may still deliver something older than a30
['a10', 'b20']
>>> buf.take(10, drained=True)  # the label waited for the requests older than it
['y25', 'a30']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any


class TimeAligned:
    def __init__(self, cap: int = 5000) -> None:
        self.cap = cap
        self.buffers: dict[Hashable, deque[tuple[int, Any]]] = {}
        self.latest: dict[Hashable, int] = {}  # newest timestamp each watched partition has delivered

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def watch(self, partitions: Iterable[Hashable]) -> None:
        """The partitions whose records are merged (each one holds the others back until it has
        delivered a record, or the consumer is drained)."""
        for p in partitions:
            self.latest.setdefault(p, -(2**63))

    def add(self, records: Iterable[tuple[Hashable, int, Any]]) -> None:
        """Buffer ``(partition, timestamp, record)`` triples, each partition's in its order."""
        for partition, timestamp, record in records:
            self.buffers.setdefault(partition, deque()).append((timestamp, record))
            if partition in self.latest:
                self.latest[partition] = max(self.latest[partition], timestamp)

    def clear(self) -> None:
        """Forget everything buffered (the consumer seeks back and reads it again)."""
        self.buffers.clear()
        self.latest = dict.fromkeys(self.latest, -(2**63))

    @property
    def safe_until(self) -> int:
        """No partition can still deliver a record older than this (each delivers in order)."""
        return min(self.latest.values(), default=-(2**63))

    def take(self, limit: int, drained: bool) -> list[Any]:
        """Up to ``limit`` records in timestamp order (ties: the order of ``watch``)."""
        out: list[Any] = []
        while len(out) < limit:
            heads = {p: b[0][0] for p, b in self.buffers.items() if b}
            if not heads:
                break
            p = min(heads, key=lambda q: heads[q])
            if not drained and heads[p] > self.safe_until and len(self) <= self.cap:
                break
            out.append(self.buffers[p].popleft()[1])
        return out

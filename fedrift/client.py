"""``RoutingClient``: the live routing weights for an application, and ``choose()`` by the deficit
rule, so a client can route requests itself exactly as the router would."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer

from fedrift.connection import Connection
from fedrift.core.router import DeficitRouter
from fedrift.topics import ROUTING_WEIGHTS, TopicCatalog
from schemas import RecordError, codec


class RoutingClient:
    """Follows the compacted ``routing.weights`` topic in a background thread.

    >>> client = RoutingClient(Connection("127.0.0.1:9092"), TopicCatalog(), models=("a", "b"), follow=False)
    >>> [client.choose() for _ in range(4)], client.version
    (['a', 'b', 'a', 'b'], 0)
    """

    def __init__(self, conn: Connection, catalog: TopicCatalog, models=(), follow: bool = True) -> None:
        self.topic = catalog.name(ROUTING_WEIGHTS)
        self._router = DeficitRouter({m: 1.0 for m in models} or {"default": 1.0})
        self.latest: dict | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = None
        if follow:
            self._consumer = Consumer(
                conn.conf(**{"group.id": conn.group("routes"), "auto.offset.reset": "earliest",
                             "enable.auto.commit": False, "log_level": 3})
            )
            self._consumer.subscribe([self.topic])
            self._thread = threading.Thread(target=self._follow, name="routing-client", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(100, 0.5):
                if msg.error():
                    continue
                try:
                    _, value = codec().decode(msg.value(), expect="RoutingWeights")
                except RecordError:
                    continue
                self._apply(value)
        self._consumer.close()

    def _apply(self, value: dict) -> None:
        live = {m: w for m, w in value["weights"].items() if w > 0}
        with self._changed:
            if live and (self.latest is None or value["version"] > self.latest["version"]):
                self._router.set_weights(live, value["version"])
                self.latest = value
                self._changed.notify_all()

    @property
    def weights(self) -> dict[str, float]:
        with self._lock:
            return dict(self._router.weights)

    @property
    def version(self) -> int:
        return self._router.version

    def choose(self) -> str:
        with self._lock:
            return self._router.choose()

    def wait_for_change(self, timeout: float | None = None) -> dict | None:
        """Block until a newer weights record arrives; returns it (None on timeout)."""
        with self._changed:
            seen = self.latest["version"] if self.latest else -1
            self._changed.wait_for(lambda: self.latest is not None and self.latest["version"] > seen, timeout)
            return self.latest if self.latest and self.latest["version"] > seen else None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

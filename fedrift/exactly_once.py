"""Per-request-id checks of the pipeline's exactly-once promises, read back from the broker.

Used by the chaos test and the soak benchmark: every acked request has exactly one
read_committed prediction, and each model learned each label once (the hosts' learned-id
digests, summed per model, equal the digest of the labelled ids). With shared training each host
also learns the other replicas' partitions: its own digest plus its peer digest must equal the
digest of all labelled ids (``shared_hosts``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer

from fedrift.connection import Connection
from fedrift.core.replica import id_digest
from fedrift.kafka_io import read_compacted
from fedrift.topics import MODEL_STATUS, PREDICTIONS, TopicCatalog
from schemas import codec


@dataclass
class Verdict:
    missing: list[str]  # acked requests without a prediction
    duplicated: list[str]  # requests with more than one prediction
    unexpected: list[str]  # predictions for ids never sent
    learned: dict[str, int]  # model -> labels learned (sum over its hosts)
    digest_ok: dict[str, bool]  # model -> learned-id digest equals the labelled ids'
    host_digest_ok: dict[str, bool]  # host -> own + peer digest equals the labelled ids' (shared training)

    @property
    def exactly_once(self) -> bool:
        learned_once = all(self.digest_ok.values()) and all(self.host_digest_ok.values())
        return not (self.missing or self.duplicated or self.unexpected) and learned_once


def predictions(conn: Connection, catalog: TopicCatalog, expected: int, timeout: float) -> Counter:
    """Request id -> read_committed predictions, reading until ``expected`` distinct ids arrived
    and then a few idle seconds more (so a late duplicate is caught)."""
    consumer = Consumer(
        conn.conf(**{
            "group.id": conn.group("verify"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 3,
        })
    )
    consumer.subscribe([catalog.name(PREDICTIONS)])
    seen: Counter = Counter()
    deadline, idle_until = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            msgs = [m for m in consumer.consume(2000, 0.5) if m.error() is None]
            for m in msgs:
                seen[codec().decode(m.value())[1]["request_id"]] += 1
            if len(seen) >= expected:
                idle_until = idle_until or time.monotonic() + 5
                if msgs:
                    idle_until = time.monotonic() + 5
                if time.monotonic() > idle_until:
                    break
    finally:
        consumer.close()
    return seen


def shared_hosts(settings) -> list[str]:
    """The hosts that each learn every partition: all of them with shared training, else none."""
    if not settings.shared_training:
        return []
    return [f"{m}-{r}" for m in settings.models for r in range(settings.replicas)]


def learned(conn: Connection, catalog: TopicCatalog) -> dict[str, tuple[int, int]]:
    """Model -> (labels learned, digest of the learned ids), from the hosts' latest status."""
    out: dict[str, tuple[int, int]] = {}
    for s in read_compacted(conn, catalog.name(MODEL_STATUS)).values():
        n, d = out.get(s["model"], (0, 0))
        out[s["model"]] = (n + s["n_seen"], (d + int(s["learned_digest"] or "0", 16)) % 2**64)
    return out


def learned_by_host(conn: Connection, catalog: TopicCatalog) -> dict[str, tuple[int, int]]:
    """Host -> (labels handled, own and peer, digest of all those ids): with shared training
    each host must have handled every label."""
    out = {}
    for s in read_compacted(conn, catalog.name(MODEL_STATUS)).values():
        digest = int(s["learned_digest"] or "0", 16) + int(s.get("peer_digest") or "0", 16)
        out[s["host"]] = (s["n_seen"] + s.get("n_peer_learned", 0), digest % 2**64)
    return out


def wait_learned(conn: Connection, catalog: TopicCatalog, models, labels: int, timeout: float, supervise=None,
                 hosts: Iterable[str] = ()) -> None:
    """Until every model's hosts together, and each of ``hosts`` alone (those that learn every
    partition: shared training), report ``labels`` learned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = learned(conn, catalog)
        by_host = learned_by_host(conn, catalog)
        if all(got.get(m, (0, 0))[0] >= labels for m in models) and all(
            by_host.get(h, (0, 0))[0] >= labels for h in hosts
        ):
            return
        if supervise is not None:
            supervise()
        time.sleep(1)


def verdict(conn: Connection, catalog: TopicCatalog, sent: list[str], labelled: list[str], models, timeout=120.0,
            hosts: Iterable[str] = ()):
    """``hosts``: those that must each have learned every labelled id (shared training)."""
    seen = predictions(conn, catalog, len(sent), timeout)
    expected = sum(id_digest(i) for i in labelled) % 2**64
    state = learned(conn, catalog)
    by_host = learned_by_host(conn, catalog)
    sent_set = set(sent)
    return Verdict(
        missing=[i for i in sent if seen[i] == 0],
        duplicated=[i for i, c in seen.items() if c > 1],
        unexpected=[i for i in seen if i not in sent_set],
        learned={m: state.get(m, (0, 0))[0] for m in models},
        digest_ok={m: state.get(m, (0, 0))[1] == expected for m in models},
        host_digest_ok={h: by_host.get(h, (0, 0))[1] == expected for h in hosts},
    )

"""The one topic catalog: every topic fedrift reads or writes, its record, partitions and cleanup.

>>> cat = TopicCatalog(prefix="dev.", models=("a",))
>>> cat.name(REQUESTS), cat.dlq(cat.name(REQUESTS))
('dev.inference.requests', 'dev.inference.requests.dlq')
>>> [t.cleanup for t in cat.specs() if t.name == "dev.routing.weights"]
['compact']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.records import Deployment

REQUESTS = "inference.requests"
FEEDBACK = "inference.feedback"
PREDICTIONS = "inference.predictions"
DRIFT_SIGNALS = "drift.signals"
HPO_TRIGGERS = "hpo.triggers"
HPO_METRICS = "hpo.metrics"
HPO_AGGREGATES = "hpo.aggregates"
HPO_KEYS = "hpo.keys"
ROUTING_WEIGHTS = "routing.weights"
MODEL_STATUS = "model.status"
SHADOW_RESULTS = "shadow.results"
DEPLOYMENTS = "deployments"
HOST_PROGRESS = "host.progress"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created. ``partitions=None`` means the catalog default."""

    base: str
    record: str
    key: str
    cleanup: str = "delete"
    partitions: int | None = None
    retention_ms: int | None = None


# Compacted topics hold state (latest value per key) and are read from the start on restart.
BASE_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(REQUESTS, "InferenceRequest", "request id"),  # and the controller's RoutingWeights markers
    TopicSpec(FEEDBACK, "Feedback", "request id"),
    TopicSpec(PREDICTIONS, "Prediction", "request id"),
    TopicSpec(DRIFT_SIGNALS, "DriftSignal", "analyzer", partitions=1),
    TopicSpec(HPO_TRIGGERS, "HpoTrigger", "model or *", partitions=1),  # and UnmaskRequest
    TopicSpec(HPO_METRICS, "TrialMetric", "model"),  # and UnmaskShare
    TopicSpec(HPO_AGGREGATES, "AggregateResult", "model", cleanup="compact", partitions=1),
    TopicSpec(HPO_KEYS, "AgentKey", "host", cleanup="compact", partitions=1),  # and RoundKeys (host@round)
    TopicSpec(ROUTING_WEIGHTS, "RoutingWeights", "weights", cleanup="compact", partitions=1),
    TopicSpec(MODEL_STATUS, "ModelStatus", "host", cleanup="compact", partitions=1),
    TopicSpec(SHADOW_RESULTS, "ShadowResult", "request id"),
    TopicSpec(DEPLOYMENTS, "Deployment", "model | model/shadow | model/pruning", cleanup="compact", partitions=1),
    TopicSpec(HOST_PROGRESS, "HostProgress", "host", cleanup="compact", partitions=1),  # each host's committed inputs
)


def deployment_key(d: Mapping[str, Any]) -> str:
    """The compaction key of a Deployment: one per lifecycle, so a later record of one (a PRUNE)
    never hides the state of another (a running shadow, the promoted configuration).

    >>> deployment_key({"model": "hat", "action": "REJECT"})
    'hat/shadow'
    """
    if d["action"] == "PROMOTE":
        return d["model"]
    if d["action"] in ("SHADOW_START", "REJECT"):
        return f"{d['model']}/shadow"
    return f"{d['model']}/pruning"


def deployments_in_force(latest: Iterable[Deployment]) -> list[Deployment]:
    """From the compacted topic's latest records, those still in force, in the order to re-apply
    them at start: promotions, then shadows not yet promoted (a PROMOTE lives under another key
    than its SHADOW_START, matched by round), then prunes.

    >>> start = {"model": "a", "action": "SHADOW_START", "round_id": "r1"}
    >>> [d["action"] for d in deployments_in_force([start, {**start, "action": "PROMOTE"}])]
    ['PROMOTE']
    """
    records = list(latest)
    promotes = [d for d in records if d["action"] == "PROMOTE"]
    promoted = {(d["model"], d["round_id"]) for d in promotes}
    shadows = [d for d in records if d["action"] == "SHADOW_START" and (d["model"], d["round_id"]) not in promoted]
    return promotes + shadows + [d for d in records if d["action"] == "PRUNE"]


@dataclass(frozen=True)
class ResolvedTopic:
    """A catalog entry with its final name and settings, ready for the AdminClient."""

    name: str
    record: str
    partitions: int
    replication_factor: int
    cleanup: str
    retention_ms: int | None

    def config(self, min_insync_replicas: int | None = None) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup}
        if self.cleanup == "delete" and self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        if self.cleanup == "compact":
            cfg["min.cleanable.dirty.ratio"] = "0.1"
            cfg["segment.ms"] = str(3600 * 1000)
        if min_insync_replicas:
            cfg["min.insync.replicas"] = str(min_insync_replicas)
        return cfg


class TopicCatalog:
    """Names and creation settings of every topic, under one configurable prefix."""

    def __init__(
        self,
        prefix: str = "",
        models: Iterable[str] = (),
        partitions: int = 3,
        replication_factor: int = 0,
        retention_ms: int | None = 7 * 24 * 3600 * 1000,
    ) -> None:
        self.prefix = prefix
        self.models = tuple(models)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.retention_ms = retention_ms

    @classmethod
    def from_settings(cls, settings) -> TopicCatalog:
        return cls(
            prefix=settings.topic_prefix,
            models=settings.models,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            retention_ms=settings.retention_ms,
        )

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @staticmethod
    def dlq(topic: str) -> str:
        return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX

    def record_of(self, topic: str) -> str:
        """The record name a topic carries (its schema), for decoding any catalog topic."""
        base = topic.removeprefix(self.prefix)
        if base.endswith(DLQ_SUFFIX):
            return "DeadLetter"
        for spec in BASE_TOPICS:
            if spec.base == base:
                return spec.record
        raise KeyError(f"topic {topic!r} is not in the catalog (prefix {self.prefix!r})")

    def specs(self) -> list[ResolvedTopic]:
        """Every topic, and a DLQ beside each one."""
        out: list[ResolvedTopic] = []
        for spec in BASE_TOPICS:
            out.append(self._resolve(self.name(spec.base), spec.record, spec.partitions, spec.cleanup))
        for topic in list(out):
            out.append(self._resolve(self.dlq(topic.name), "DeadLetter", 1, "delete"))
        return out

    def _resolve(self, name: str, record: str, partitions: int | None, cleanup: str) -> ResolvedTopic:
        return ResolvedTopic(
            name=name,
            record=record,
            partitions=partitions or self.partitions,
            replication_factor=self.replication_factor,
            cleanup=cleanup,
            retention_ms=self.retention_ms,
        )

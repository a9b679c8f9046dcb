"""Follow the pipeline's output topics and keep what a user wants to see: predictions (and their
accuracy once labels are known), drift signals, routing weights, HPO rounds, shadows, dead letters."""

from __future__ import annotations

import bisect
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer

from fedrift.connection import Connection
from fedrift.topics import (
    DEPLOYMENTS,
    DRIFT_SIGNALS,
    FEEDBACK,
    HPO_AGGREGATES,
    HPO_METRICS,
    HPO_TRIGGERS,
    MODEL_STATUS,
    PREDICTIONS,
    REQUESTS,
    ROUTING_WEIGHTS,
    SHADOW_RESULTS,
    TopicCatalog,
)
from schemas import RecordError, codec


@dataclass
class PipelineView:
    requests: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # id -> (order, label)
    predictions: Counter = field(default_factory=Counter)  # request id -> predictions seen
    served: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # id -> (model, prediction)
    drift: list[dict] = field(default_factory=list)
    weights: list[tuple[int, dict]] = field(default_factory=list)  # (predictions seen, weights)
    triggers: list[dict] = field(default_factory=list)
    aggregates: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, dict, dict]] = field(default_factory=list)
    host_lags_ms: list[int] = field(default_factory=list)  # per prediction: sent minus the request's event time
    status_times: list[int] = field(default_factory=list)  # when each ModelStatus was sent
    event_times: dict[str, int] = field(default_factory=dict)  # request id -> its event time
    # (host, shadow config id) -> the request ids that host answered with that shadow
    shadowed: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @property
    def n_predicted(self) -> int:
        return len(self.predictions)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.predictions.values() if c > 1)

    def accuracy(self) -> float | None:
        hits = [
            pred == self.requests[rid][1]
            for rid, (_, pred) in self.served.items()
            if rid in self.requests and self.requests[rid][1] is not None
        ]
        return sum(hits) / len(hits) if hits else None

    def correctness_by_order(self) -> list[tuple[int, bool]]:
        out = [
            (self.requests[rid][0], pred == self.requests[rid][1])
            for rid, (_, pred) in self.served.items()
            if rid in self.requests and self.requests[rid][1] is not None
        ]
        return sorted(out)

    def trigger_positions(self) -> list[int]:
        """Where in the stream each drift trigger fired. An input trigger carries the analyzer's
        own request count, where it saw the change; an error trigger's count is only where the
        analyzer had read to when the hosts' flags reached it (hundreds of requests behind the
        hosts on a busy machine), so it is placed by the clock: the requests sent before its time
        minus the control delay (the requests' event times are their send times)."""
        lag_ms = int(1000 * (self.control_delay_s() or 0.0))
        sent = sorted(self.event_times.values())
        return [d["position"] if d["source"] != "error" else bisect.bisect_right(sent, d["time"] - lag_ms)
                for d in self.drift if d["drifted"]]

    def hpo_latency_s(self, earliest: bool = False) -> float | None:
        """Mean (or least) seconds from an HPO trigger to the SHADOW_START deployments of its round:
        how long the hosts took to optimise and the aggregator to decide (the simulator's
        ``hpo_latency_s``; the least where ``shadow_starts`` place each host's shadow)."""
        started = {t["round_id"]: t["time"] for t in self.triggers}
        waits = [(d["time"] - started[d["round_id"]]) / 1000 for d in self.deployments
                 if d["action"] == "SHADOW_START" and d.get("round_id") in started]
        if not waits:
            return None
        return min(waits) if earliest else sum(waits) / len(waits)

    def replay(self) -> dict:
        """The ``PipelineConfig`` fields that replay this run in the simulator: its aggregates per
        round (the outcome of its DP noise), where each host's shadows started, and its control
        delay; the rounds' metrics are due at the earliest shadow start, so none starts late."""
        replay = {"replayed_rounds": self.aggregates_by_round(), "shadow_starts": self.shadow_starts(),
                  "control_delay_s": self.control_delay_s(), "hpo_latency_s": self.hpo_latency_s(earliest=True)}
        return {k: v for k, v in replay.items() if v is not None}

    def aggregates_by_round(self) -> tuple[tuple[dict, ...], ...]:
        """The aggregates of each HPO round, in the order of its triggers (the simulator's
        ``replayed_rounds``): the outcome of this run's DP noise."""
        return by_round(self.aggregates, self.triggers)

    def control_delay_s(self) -> float | None:
        """Median seconds from a request to routing weights that count it: the hosts' lag behind
        the stream (a prediction sent minus its request's event time) plus the controller's (its
        weights' time minus the newest status sent before them). The simulator's ``control_delay_s``."""
        statuses = sorted(self.status_times)
        reactions = []
        for _, w in self.weights:
            i = bisect.bisect_right(statuses, w["time"])
            if i:
                reactions.append(w["time"] - statuses[i - 1])
        if not self.host_lags_ms or not reactions:
            return None
        return (statistics.median(self.host_lags_ms) + statistics.median(reactions)) / 1000

    def shadow_starts(self) -> tuple[tuple[str, str, str], ...]:
        """Per host and shadow configuration, the earliest request (by event time) the host answered
        with that shadow: where its deployment reached the host (the simulator's ``shadow_starts``)."""
        return tuple(
            (host, config, min(rids, key=lambda r: self.event_times.get(r, 2**63)))
            for (host, config), rids in sorted(self.shadowed.items())
        )

    def shadow_state(self) -> str:
        state: dict[str, str] = {}
        for d in self.deployments:
            if d["action"] in ("SHADOW_START", "PROMOTE", "REJECT"):
                state[d["model"]] = f"{d['action'].lower()} {d['config_id']}"
        return ", ".join(f"{m}: {s}" for m, s in sorted(state.items())) or "none"


def by_round(aggregates: list[dict], triggers: list[dict]) -> tuple[tuple[dict, ...], ...]:
    """``aggregates`` grouped by the HPO round they conclude, in the order of ``triggers``; a round
    that published none gets an empty group.

    >>> by_round([{"round_id": "b", "model": "pa"}], [{"round_id": "a"}, {"round_id": "b"}])
    ((), ({'round_id': 'b', 'model': 'pa'},))
    """
    return tuple(tuple(a for a in aggregates if a["round_id"] == t["round_id"]) for t in triggers)


class PipelineMonitor:
    """Consumes the catalog's output topics (read_committed) into a ``PipelineView``."""

    def __init__(self, conn: Connection, catalog: TopicCatalog) -> None:
        self.catalog = catalog
        self.view = PipelineView()
        self.consumer = Consumer(
            conn.conf(**{
                "group.id": conn.group("monitor"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 3,
            })
        )
        bases = (
            REQUESTS,
            FEEDBACK,
            PREDICTIONS,
            DRIFT_SIGNALS,
            ROUTING_WEIGHTS,
            HPO_AGGREGATES,
            HPO_METRICS,
            HPO_TRIGGERS,
            DEPLOYMENTS,
            MODEL_STATUS,
            SHADOW_RESULTS,
        )
        self.topics = {catalog.name(b): b for b in bases}
        self.records = {t: catalog.record_of(t) for t in self.topics}  # each topic's own record
        self.dlq = catalog.dlq(catalog.name(REQUESTS))
        self.consumer.subscribe([*self.topics, self.dlq])

    def poll(self, seconds: float = 0.5) -> PipelineView:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(2000, 0.1):
                if msg.error() is None:
                    self._apply(msg)
        return self.view

    def _apply(self, msg) -> None:
        v = self.view
        if msg.topic() == self.dlq:
            _, letter = codec().decode(msg.value(), expect="DeadLetter")
            v.dead_letters.append((msg.key(), letter, dict(msg.headers() or [])))
            return
        base = self.topics[msg.topic()]
        try:
            name, value = codec().decode(msg.value())
        except RecordError:
            return  # poison records are the DLQ's business
        if name != self.records[msg.topic()]:
            return  # protocol records beside the topic's own (UnmaskShare on hpo.metrics)
        if base == REQUESTS:
            order, label = v.requests.get(value["id"], (len(v.requests), None))
            v.requests[value["id"]] = (order, value["label"] if value["label"] is not None else label)
            v.event_times[value["id"]] = value["event_time"]
        elif base == FEEDBACK:  # a late label
            order, _ = v.requests.get(value["id"], (len(v.requests), None))
            v.requests[value["id"]] = (order, value["label"])
        elif base == PREDICTIONS:
            v.predictions[value["request_id"]] += 1
            v.served[value["request_id"]] = (value["model"], value["prediction"])
            v.host_lags_ms.append(msg.timestamp()[1] - value["event_time"])
        elif base == MODEL_STATUS:
            v.status_times.append(msg.timestamp()[1])
        elif base == DRIFT_SIGNALS:
            v.drift.append(value)
        elif base == ROUTING_WEIGHTS:
            v.weights.append((v.n_predicted, value))  # takes effect about where serving has got to
        elif base == HPO_TRIGGERS:
            v.triggers.append(value)
        elif base == HPO_AGGREGATES:
            v.aggregates.append(value)
        elif base == HPO_METRICS:
            v.metrics.append(value)
        elif base == DEPLOYMENTS:
            v.deployments.append(value)
        elif base == SHADOW_RESULTS:
            v.shadowed.setdefault((value["host"], value["shadow_config_id"]), []).append(value["request_id"])

    def close(self) -> None:
        self.consumer.close()


def plot(view: PipelineView, path, window: int = 250) -> None:
    """Drift score, routing weights and rolling accuracy over the stream, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    # a negative threshold marks windows scored while a new reference is being learnt: no score
    inputs = [d for d in view.drift if d["source"] != "error" and d["threshold"] >= 0]
    if inputs:
        axes[0].plot([d["position"] for d in inputs], [d["score"] for d in inputs], label="drift score")
        axes[0].plot([d["position"] for d in inputs], [d["threshold"] for d in inputs], "--", label="threshold")
    for d in view.drift:
        if d["drifted"]:
            axes[0].axvline(d["position"], color="red", alpha=0.4)
    axes[0].set_ylabel("drift (z)")
    axes[0].legend(loc="upper left")
    models = sorted({m for _, w in view.weights for m in w["weights"]})
    for m in models:
        axes[1].step(
            [p for p, _ in view.weights], [w["weights"].get(m, 0.0) for _, w in view.weights], where="post", label=m
        )
    axes[1].set_ylabel("routing weight")
    if models:
        axes[1].legend(loc="upper left")
    series = view.correctness_by_order()
    if len(series) > window:
        order = np.array([o for o, _ in series])
        hits = np.array([c for _, c in series], dtype=float)
        axes[2].plot(order[window - 1 :], np.convolve(hits, np.ones(window) / window, mode="valid"))
    axes[2].set_ylabel(f"accuracy ({window}-event window)")
    axes[2].set_xlabel("request")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

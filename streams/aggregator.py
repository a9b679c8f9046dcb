"""Aggregator processor: collects ``hpo.metrics`` per (model, round) and publishes the best
configuration to ``hpo.aggregates``, when every replica has reported or after a timeout."""

from __future__ import annotations

import logging
import math
import time

import faust

from fedrift import json_config
from fedrift.config import Settings
from fedrift.core.aggregation import Aggregator, Contribution
from fedrift.core.fhpo import FhpoConfig
from fedrift.topics import HPO_AGGREGATES, HPO_METRICS, TopicCatalog
from streams.app import RawTopics, decoded, send

log = logging.getLogger(__name__)


class RoundBook:
    """Open rounds, their contributions, and which rounds are already published."""

    def __init__(self, settings: Settings, expected_per_agent: int, timeout_s: float) -> None:
        self.settings = settings
        self.expected = expected_per_agent
        self.timeout_s = timeout_s
        self.open: dict[tuple[str, str], tuple[Aggregator, float, dict[str, int]]] = {}
        self.closed: set[tuple[str, str]] = set()

    def add(self, metric: dict) -> tuple[str, str] | None:
        key = (metric["model"], metric["round_id"])
        if key in self.closed:
            return None
        if key not in self.open:
            group = [f"{metric['model']}-{r}" for r in range(self.settings.replicas)]
            self.open[key] = (Aggregator(metric["model"], metric["round_id"], group), time.monotonic(), {})
        agg, _, counts = self.open[key]
        shares = metric["masked_shares"]
        weighted = shares[0] if shares else metric["noised_quality"] * metric["slice_size"]
        if not math.isfinite(weighted):
            return None
        noise_std = math.sqrt(2.0) / (metric["slice_size"] * FhpoConfig().epsilon_quality)
        agg.add(
            Contribution(
                metric["agent"],
                metric["config_id"],
                json_config.loads(metric["config_json"]),
                weighted,
                metric["slice_size"],
                noise_std,
                masked=bool(shares),
            )
        )
        counts[metric["agent"]] = counts.get(metric["agent"], 0) + 1
        complete = len(counts) >= self.settings.replicas and all(c >= self.expected for c in counts.values())
        return key if complete else None

    def due(self) -> list[tuple[str, str]]:
        now = time.monotonic()
        return [k for k, (_, t0, _) in self.open.items() if now - t0 > self.timeout_s]

    def close(self, key: tuple[str, str]):
        agg, _, _ = self.open.pop(key)
        self.closed.add(key)
        return agg.result()


def register_aggregator(app: faust.App, settings: Settings, catalog: TopicCatalog, timeout_s: float = 120.0):
    topics = RawTopics(app, catalog)
    fh = FhpoConfig()
    book = RoundBook(settings, expected_per_agent=1 + fh.n_shared + fh.n_local, timeout_s=timeout_s)

    async def publish(key) -> None:
        result = book.close(key)
        if result.best is None:
            log.warning("round %s/%s: no usable metric (dropped: %s)", *key, result.dropped)
            return
        agents = sorted({a for s in result.leaderboard for a in s.agents})
        await send(
            topics,
            catalog.name(HPO_AGGREGATES),
            "AggregateResult",
            {
                "round_id": result.round_id,
                "model": result.model,
                "best_config_id": result.best.config_id,
                "best_config_json": json_config.dumps(result.best.config),
                "score": result.best.score,
                "score_std": result.best.std,
                "agents": agents,
                "leaderboard": [
                    {"config_id": s.config_id, "score": s.score, "score_std": s.std, "agents": len(s.agents)}
                    for s in result.leaderboard
                ],
            },
            result.model,
        )
        log.info(
            "round %s/%s: best %s %.3f±%.3f", key[0], key[1], result.best.config_id, result.best.score, result.best.std
        )

    @app.agent(topics.get(catalog.name(HPO_METRICS)), name="aggregator")
    async def aggregate(stream):
        async for _event, metric in decoded(stream, topics, "TrialMetric", "aggregator"):
            complete = book.add(metric)
            if complete:
                await publish(complete)

    @app.timer(1.0)
    async def close_late_rounds():
        for key in book.due():
            await publish(key)

    return book

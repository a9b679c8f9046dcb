"""Aggregator processor: collects ``hpo.metrics`` per (model, round) and publishes the best
configuration to ``hpo.aggregates``, when every replica has reported or after a timeout; a
replica that never reports a masked configuration is recovered from the survivors' unmasking
shares (``UnmaskRequest`` on ``hpo.triggers``, ``UnmaskShare`` back on ``hpo.metrics``)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import faust

from fedrift import json_config
from fedrift.config import Settings
from fedrift.core.aggregation import Aggregator, Contribution
from fedrift.core.fhpo import FhpoConfig
from fedrift.topics import HPO_AGGREGATES, HPO_METRICS, HPO_TRIGGERS, TopicCatalog
from streams.app import RawTopics, decoded_records, now_ms, send

log = logging.getLogger(__name__)


@dataclass
class OpenRound:
    aggregator: Aggregator
    started: float
    counts: dict[str, int] = field(default_factory=dict)  # agent -> metrics received
    unmask_asked: float | None = None  # when the survivors were asked for recovery shares


class RoundBook:
    """Open rounds, their contributions, and which rounds are already published.

    A round closes when every replica has sent every metric. At ``timeout_s`` a round whose masked
    configurations miss agents first asks the survivors to unmask (``UnmaskRequest``), and closes
    as soon as every survivor has answered or ``timeout_s`` later with what it has."""

    def __init__(self, settings: Settings, expected_per_agent: int, timeout_s: float) -> None:
        self.settings = settings
        self.expected = expected_per_agent
        self.timeout_s = timeout_s
        self.open: dict[tuple[str, str], OpenRound] = {}
        self.closed: set[tuple[str, str]] = set()

    def add(self, metric: dict) -> tuple[str, str] | None:
        key = (metric["model"], metric["round_id"])
        if key in self.closed:
            return None
        if key not in self.open:
            group = [f"{metric['model']}-{r}" for r in range(self.settings.replicas)]
            self.open[key] = OpenRound(Aggregator(metric["model"], metric["round_id"], group), time.monotonic())
        rnd = self.open[key]
        shares = metric["masked_shares"]
        weighted = shares[0] if shares else metric["noised_quality"] * metric["slice_size"]
        if not math.isfinite(weighted):
            return None
        noise_std = math.sqrt(2.0) / (metric["slice_size"] * FhpoConfig().epsilon_quality)
        taken = rnd.aggregator.add(
            Contribution(
                metric["agent"],
                metric["config_id"],
                json_config.loads(metric["config_json"]),
                weighted,
                metric["slice_size"],
                noise_std,
                masked=bool(shares),
                masked_with=tuple(metric["masked_with"]),
            )
        )
        if not taken:
            return None
        rnd.counts[metric["agent"]] = rnd.counts.get(metric["agent"], 0) + 1
        complete = len(rnd.counts) >= self.settings.replicas and all(c >= self.expected for c in rnd.counts.values())
        return key if complete else None

    def add_share(self, share: dict) -> tuple[str, str] | None:
        """A survivor's recovery share (``dropped`` names the dropped agents it covers: those it
        masked with); returns the round's key once every survivor answered."""
        key = (share["model"], share["round_id"])
        rnd = self.open.get(key)
        if rnd is None or rnd.unmask_asked is None:
            return None
        rnd.aggregator.add_recovery(share["agent"], share["config_id"], share["dropped"], share["share"])
        return key if rnd.aggregator.recovery_complete() else None

    def due(self) -> list[tuple[tuple[str, str], dict | None]]:
        """Rounds past their deadline: ``(key, UnmaskRequest)`` to ask for recovery shares first,
        ``(key, None)`` to close."""
        now, out = time.monotonic(), []
        for key, rnd in self.open.items():
            if rnd.unmask_asked is None and now - rnd.started > self.timeout_s:
                dropped = rnd.aggregator.declare_dropped()
                rnd.unmask_asked = now
                if dropped:
                    request = {"round_id": key[1], "model": key[0], "time": now_ms(), "dropped": dropped}
                    out.append((key, request))
                    continue
            if rnd.unmask_asked is not None and (
                now - rnd.unmask_asked > self.timeout_s or not rnd.aggregator.declared_dropped
            ):
                out.append((key, None))
        return out

    def close(self, key: tuple[str, str]):
        rnd = self.open.pop(key)
        self.closed.add(key)
        return rnd.aggregator.result()


def register_aggregator(app: faust.App, settings: Settings, catalog: TopicCatalog):
    topics = RawTopics(app, catalog)
    fh = FhpoConfig()
    book = RoundBook(settings, expected_per_agent=1 + fh.n_shared + fh.n_local, timeout_s=settings.hpo_round_timeout_s)

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
        async for _event, name, value in decoded_records(stream, topics, ("TrialMetric", "UnmaskShare"), "aggregator"):
            complete = book.add_share(value) if name == "UnmaskShare" else book.add(value)
            if complete:
                await publish(complete)

    @app.timer(1.0)
    async def close_late_rounds():
        for key, unmask in book.due():
            if unmask is None:
                await publish(key)
                continue
            log.info("round %s/%s: asking the survivors to unmask without %s", *key, unmask["dropped"])
            await send(topics, catalog.name(HPO_TRIGGERS), "UnmaskRequest", unmask, key[0])

    return book

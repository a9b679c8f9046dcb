"""Router processor: validate each request, pick the model that serves it by the deficit rule,
and forward it to every model (``serve`` true for the chosen one only), so every model learns from
and is evaluated on all labelled traffic while exactly one answers; mirror a slice of each model's
traffic to its shadow; forward late labels to every model.

Invalid requests (undecodable, NaN/inf, wrong feature count) go to ``inference.requests.dlq``.
Weights come from the compacted ``routing.weights`` topic (read whole at start, then followed);
until one arrives, traffic is uniform. A table (changelogged, so it survives restarts) remembers
which model served each request: a redelivered request goes to the same model again (its host
drops the duplicate) and a late label finds its host. The table is windowed by event time
(tumbling windows of ``label_ttl_s``, expired after two), so its memory and changelog stay bounded:
a request is remembered for at least ``label_ttl_s`` and at most twice that. A label whose
request has not been routed yet (the two topics are consumed independently) is held in a second
windowed table and forwarded right after its request; a label for a request the router no longer
remembers is held the same way and expires unused. After a restart the deficit counts of the
current weights are rebuilt from the served table, so traffic keeps matching the weights.
"""

from __future__ import annotations

import hashlib
import logging

import faust

from fedrift.config import Settings
from fedrift.core.router import DeficitRouter
from fedrift.kafka_io import read_compacted
from fedrift.topics import DEPLOYMENTS, FEEDBACK, REQUESTS, ROUTING_WEIGHTS, TopicCatalog, deployments_in_force
from schemas import FeatureCountMismatch, codec, validate_features
from streams.app import RawTopics, decoded, send

log = logging.getLogger(__name__)


class FeatureContract:
    """The stream's feature count: fixed by settings, or taken from the first valid request."""

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected or None

    def __call__(self, request: dict) -> None:
        features = request["features"]
        if not features:
            raise FeatureCountMismatch("request has no features")
        validate_features(features, self.expected)
        if self.expected is None:
            self.expected = len(features)


def _unknown() -> None:
    """The router tables' default: a request they do not remember."""
    return None


def mirrored(request_id: str, fraction: float) -> bool:
    """A stable pseudo-random choice of ``fraction`` of requests (same id, same answer)."""
    h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


class RouterState:
    """Live weights and active shadows, rebuilt from the compacted topics at start."""

    def __init__(self, settings: Settings, catalog: TopicCatalog) -> None:
        self.settings = settings
        self.router = DeficitRouter({m: 1.0 for m in settings.models})
        self.shadows: set[str] = set()
        self.resumed = False
        weights = read_compacted(settings.bootstrap, catalog.name(ROUTING_WEIGHTS)).get("weights")
        if weights:
            self.apply_weights(weights)
        for d in deployments_in_force(read_compacted(settings.bootstrap, catalog.name(DEPLOYMENTS)).values()):
            self.apply_deployment(d)

    def apply_weights(self, value: dict) -> None:
        if value["version"] <= self.router.version and self.router.routed:
            return
        live = {m: w for m, w in value["weights"].items() if m in self.settings.models and w > 0}
        if live:
            self.router.set_weights(live, value["version"])
            log.info("routing weights v%d: %s", value["version"], live)

    def resume_counts(self, served_values) -> None:
        """Rebuild the deficit counts of the current weights version from the served table's
        ``model|version`` entries (the table is restored from its changelog before agents run)."""
        self.resumed = True
        counts: dict[str, int] = {}
        for value in served_values:
            model, version = value.split("|")
            if int(version) == self.router.version:
                counts[model] = counts.get(model, 0) + 1
        if counts:
            self.router.resume(counts)
            log.info("router resumed v%d deficit counts %s", self.router.version, counts)

    def apply_deployment(self, d: dict) -> None:
        if d["action"] == "SHADOW_START":
            self.shadows.add(d["model"])
        elif d["action"] in ("PROMOTE", "REJECT"):
            self.shadows.discard(d["model"])


def register_router(app: faust.App, settings: Settings, catalog: TopicCatalog) -> RouterState:
    topics = RawTopics(app, catalog)
    state = RouterState(settings, catalog)
    contract = FeatureContract(settings.n_features)
    enc = codec()
    ttl = settings.label_ttl_s

    def windowed_table(name: str):
        return (
            app.Table(name, key_type=str, value_type=str, partitions=settings.partitions, default=_unknown)
            .tumbling(ttl, expires=2 * ttl)
            .relative_to_stream()
        )

    served = windowed_table("router-served")  # request id -> "model|routing version"
    early = windowed_table("router-early-labels")  # request id -> "label|time", label before request

    def lookup(table, key: bytes) -> str | None:
        """``key`` in the current event's window or either neighbour (the other event of the pair
        may be stamped a little earlier or later). Windowed keys are JSON-serialised
        ``[key, [start, end]]`` in the changelog, hence str keys."""
        window = table[key.decode()]
        return window.current() or window.delta(ttl) or window.delta(-ttl)

    async def forward_label(request_id: str, label: int, time_ms: int) -> None:
        request = {"id": request_id, "event_time": time_ms, "features": [], "label": label}
        for target in settings.models:
            routed = {"request": request, "model": target, "routing_version": 0, "feedback": True}
            await send(topics, catalog.routed(target), "RoutedRequest", routed, request_id)

    @app.agent(topics.get(catalog.name(ROUTING_WEIGHTS)), name="router-weights")
    async def follow_weights(stream):
        async for _event, value in decoded(stream, topics, "RoutingWeights", "router"):
            state.apply_weights(value)

    @app.agent(topics.get(catalog.name(DEPLOYMENTS)), name="router-deployments")
    async def follow_deployments(stream):
        async for _event, value in decoded(stream, topics, "Deployment", "router", owner=False):
            state.apply_deployment(value)

    @app.agent(topics.get(catalog.name(REQUESTS)), name="router")
    async def route(stream):
        async for event, request in decoded(stream, topics, "InferenceRequest", "router", contract):
            if not state.resumed:
                state.resume_counts(served.table.values())
            key = event.message.key
            previous = lookup(served, key)
            if previous is not None:  # redelivered after a restart: same model, the host de-duplicates
                model, version = previous.split("|")
            else:
                model, version = state.router.choose(), str(state.router.version)
                served[key.decode()] = f"{model}|{version}"
            shadow = mirrored(request["id"], settings.shadow_fraction)
            for target in settings.models:
                routed = {
                    "request": request,
                    "model": target,
                    "routing_version": int(version),
                    "shadow": shadow and target in state.shadows,
                    "serve": target == model,
                }
                await topics.get(catalog.routed(target)).send(key=key, value=enc.encode("RoutedRequest", routed))
            held = lookup(early, key) if previous is None else None
            if held is not None:  # its label came first (the feedback agent ran ahead of this one)
                label, time_ms = held.split("|")
                await forward_label(request["id"], int(label), int(time_ms))

    @app.agent(topics.get(catalog.name(FEEDBACK)), name="router-feedback")
    async def forward_feedback(stream):
        async for event, fb in decoded(stream, topics, "Feedback", "router"):
            if lookup(served, event.message.key) is None:
                # not routed yet (or expired): hold the label for its request
                early[event.message.key.decode()] = f"{fb['label']}|{fb['time']}"
                continue
            await forward_label(fb["id"], fb["label"], fb["time"])

    return state

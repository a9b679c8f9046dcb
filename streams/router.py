"""Router processor: validate each request, pick its model by the deficit rule, forward it.

Invalid requests (undecodable, NaN/inf, wrong feature count) go to ``inference.requests.dlq``.
Weights come from the compacted ``routing.weights`` topic; until one arrives, traffic is uniform.
"""

from __future__ import annotations

import logging

import faust

from fedrift.config import Settings
from fedrift.core.router import DeficitRouter
from fedrift.topics import REQUESTS, ROUTING_WEIGHTS, TopicCatalog
from schemas import FeatureCountMismatch, codec, validate_features
from streams.app import RawTopics, decode_or_dead_letter

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


def register_router(app: faust.App, settings: Settings, catalog: TopicCatalog) -> DeficitRouter:
    topics = RawTopics(app, catalog)
    router = DeficitRouter({m: 1.0 for m in settings.models})
    contract = FeatureContract(settings.n_features)
    enc = codec()

    @app.agent(topics.get(catalog.name(ROUTING_WEIGHTS)), name="router-weights")
    async def follow_weights(stream):
        async for event in stream.events():
            value = await decode_or_dead_letter(topics, event, "RoutingWeights", "router")
            if value is None or value["version"] <= getattr(router, "version", -1):
                continue
            live = {m: w for m, w in value["weights"].items() if m in settings.models and w > 0}
            if live:
                router.set_weights(live, value["version"])
                log.info("routing weights v%d: %s", value["version"], live)

    @app.agent(topics.get(catalog.name(REQUESTS)), name="router")
    async def route(stream):
        async for event in stream.events():
            request = await decode_or_dead_letter(topics, event, "InferenceRequest", "router", contract)
            if request is None:
                continue
            model = router.choose()
            routed = {"request": request, "model": model, "routing_version": router.version}
            await topics.get(catalog.routed(model)).send(
                key=event.message.key, value=enc.encode("RoutedRequest", routed)
            )

    return router

"""Run fedrift's Faust processors in one worker process: ``fedrift streams --processors router``."""

from __future__ import annotations

import faust

from fedrift.config import Settings
from fedrift.topics import TopicCatalog
from streams.aggregator import register_aggregator
from streams.app import create_app
from streams.controller import register_controller
from streams.drift import register_drift
from streams.router import register_router
from streams.shadow import register_shadow

PROCESSORS = {
    "router": register_router,
    "drift": register_drift,
    "aggregator": register_aggregator,
    "controller": register_controller,
    "shadow": register_shadow,
}
ALL = ",".join(PROCESSORS)


def build(settings: Settings, processors: list[str]) -> faust.App:
    if processors == ["all"]:
        processors = list(PROCESSORS)
    unknown = [p for p in processors if p not in PROCESSORS]
    if unknown:
        raise ValueError(f"unknown processor(s) {unknown}; choose from {sorted(PROCESSORS)}")
    app = create_app(settings)
    catalog = TopicCatalog.from_settings(settings)
    for name in processors:
        PROCESSORS[name](app, settings, catalog)
    return app


def run_worker(settings: Settings, processors: list[str]) -> None:
    app = build(settings, processors)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()

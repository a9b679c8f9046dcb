"""Run fedrift's Faust processors in a worker process: ``fedrift streams --processors drift``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faust

from fedrift.access import ALL_PROCESSORS
from fedrift.config import Settings
from fedrift.connection import Connection, connect
from fedrift.topics import TopicCatalog
from streams.aggregator import register_aggregator
from streams.app import create_app
from streams.controller import register_controller
from streams.drift import register_drift
from streams.shadow import register_shadow

Register = Callable[[faust.App, Settings, TopicCatalog, Connection], object]
PROCESSORS: dict[str, Register] = {
    "drift": register_drift,
    "aggregator": register_aggregator,
    "controller": register_controller,
    "shadow": register_shadow,
}
ALL = ",".join(PROCESSORS)


def build(settings: Settings, processors: list[str]) -> faust.App:
    """One Faust app running ``processors``, connected as their role: a single processor as its
    own principal, several as ``streams`` (whose ACLs are the union of theirs)."""
    if processors == ["all"]:
        processors = list(PROCESSORS)
    unknown = [p for p in processors if p not in PROCESSORS]
    if unknown:
        raise ValueError(f"unknown processor(s) {unknown}; choose from {sorted(PROCESSORS)}")
    conn = connect(settings, processors[0] if len(processors) == 1 else ALL_PROCESSORS)
    app = create_app(settings, conn)
    catalog = TopicCatalog.from_settings(settings)
    for name in processors:
        PROCESSORS[name](app, settings, catalog, conn)
    return app


def run_worker(settings: Settings, processors: list[str], ready_file: str | None = None) -> None:
    app = build(settings, processors)
    if ready_file:

        @app.task
        async def ready() -> None:
            Path(ready_file).touch()

    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()

"""``fedrift run``, the main job: broker, topics, the supervised pipeline, a drifting stream
produced into it with live progress, then a summary table and a plot."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fedrift.access import ADMIN, CLIENT
from fedrift.config import Settings
from fedrift.connection import Connection, connect
from fedrift.kafka_io import RecordProducer
from fedrift.monitor import PipelineMonitor, PipelineView, plot
from fedrift.pipeline import Pipeline
from fedrift.produce import clock_for, produce, request_events
from fedrift.provision import provision
from fedrift.topics import TopicCatalog


def _interrupt(signum, _frame) -> None:
    """SIGTERM to ``fedrift run`` unwinds like Ctrl-C, so its ``finally`` stops every child."""
    raise KeyboardInterrupt(f"signal {signum}")


def run(rows, settings: Settings, rate: float, label_delay: int, timeout: float) -> int:
    """Exit status 0 when every valid request got exactly one prediction. ``settings`` name a
    reachable broker (``cli.ensure_broker``)."""
    run_id = f"run{int(time.time())}"
    settings = dataclasses.replace(settings, topic_prefix=settings.topic_prefix or f"{run_id}.")
    catalog = provision(settings)
    out_dir = settings.home / "runs" / run_id
    print(f"topics under prefix {settings.topic_prefix!r}; logs in {out_dir}", file=sys.stderr)
    pipeline = Pipeline(settings, out_dir / "logs").start()
    monitor = PipelineMonitor(connect(settings, ADMIN), catalog)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        pipeline.wait_ready()
        produced = _start_producer(rows, run_id, connect(settings, CLIENT), catalog, rate, label_delay)
        _follow(pipeline, monitor, produced, timeout)
        monitor.poll(3.0)  # let the last control records arrive
    finally:
        pipeline.stop()
    view = monitor.view
    monitor.close()
    png = out_dir / "fedrift-run.png"
    plot(view, png)
    print(summary(view, produced["n"], png))
    return 0 if view.n_predicted == produced["n"] - len(view.dead_letters) and view.duplicates == 0 else 1


def _start_producer(rows, run_id: str, client: Connection, catalog: TopicCatalog, rate: float,
                    label_delay: int) -> dict:
    produced: dict[str, Any] = {"n": 0, "done": False, "error": None}

    def producer() -> None:
        try:
            events = request_events(rows, run_id=run_id, label_delay=label_delay, clock=clock_for(rate))
            produced["n"] = produce(RecordProducer(client), catalog, events, rate=rate)
        except Exception as exc:  # reported by the main thread
            produced["error"] = exc
        produced["done"] = True

    threading.Thread(target=producer, daemon=True).start()
    return produced


def _follow(pipeline: Pipeline, monitor: PipelineMonitor, produced: dict, timeout: float) -> None:
    """Print progress every 2 s and supervise the children until the last prediction (or timeout)."""
    t0, deadline = time.monotonic(), None
    while True:
        view = monitor.poll(2.0)
        restarts = pipeline.supervise()
        if produced["error"]:
            raise produced["error"]
        print(progress_line(view, restarts, time.monotonic() - t0), file=sys.stderr)
        if produced["done"] and view.n_predicted >= produced["n"] - len(view.dead_letters):
            return
        if produced["done"]:
            deadline = deadline or time.monotonic() + timeout
            if time.monotonic() > deadline:
                print("timed out waiting for the last predictions", file=sys.stderr)
                return


def progress_line(view: PipelineView, restarts: dict[str, int], elapsed: float) -> str:
    last = next((d for d in reversed(view.drift) if d["source"] != "error"), None)
    if last is None:
        drift = "  none yet"
    elif last["threshold"] >= 0:
        drift = f"{last['score']:6.2f}/{last['threshold']:.2f}"
    else:
        drift = "  re-referencing"
    weights = view.weights[-1][1]["weights"] if view.weights else {}
    acc = view.accuracy()
    line = (
        f"[{elapsed:6.1f}s] requests {len(view.requests):>6} predicted {view.n_predicted:>6}"
        f" acc {acc * 100 if acc is not None else 0:5.1f}%"
        f" | drift {drift}"
        f" | weights {' '.join(f'{m}={w:.2f}' for m, w in sorted(weights.items()))}"
        f" | shadow {view.shadow_state()}"
    )
    return line + (f" | restarts {' '.join(f'{n}={c}' for n, c in sorted(restarts.items()))}" if restarts else "")


def summary(view: PipelineView, produced: int, png: Path) -> str:
    by_model = Counter(model for model, _ in view.served.values())
    acc = view.accuracy()
    final = view.weights[-1][1]["weights"] if view.weights else {}
    rows = [
        ("requests produced", str(produced)),
        ("predictions (unique / duplicates)", f"{view.n_predicted} / {view.duplicates}"),
        ("accuracy of served predictions", f"{acc * 100:.2f}%" if acc is not None else "n/a"),
        ("served by model", ", ".join(f"{m} {c}" for m, c in sorted(by_model.items()))),
        (
            "drift triggers (position, source)",
            ", ".join(f"{d['position']} {d['source']}" for d in view.drift if d["drifted"]) or "none",
        ),
        ("HPO rounds aggregated", str(len({a["round_id"] for a in view.aggregates}))),
        ("routing-weight versions", str(len(view.weights))),
        ("final weights", ", ".join(f"{m} {w:.3f}" for m, w in sorted(final.items())) or "uniform"),
        ("deployments", ", ".join(f"{d['model']} {d['action'].lower()}" for d in view.deployments) or "none"),
        ("dead letters", str(len(view.dead_letters))),
        ("plot", str(png)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

"""Does ``fedrift simulate`` describe the product? The pipeline on a real local broker and the
simulator (the same stage objects on an in-memory bus with a virtual clock) serve the same stream
with the same settings; this prints, per stream, the served accuracy of each, the drift triggers
(positions in the stream) and the promotions.

The issue's target: accuracy within 0.5 points, the same triggers (± one analyzer window) and the
same promotions. CI checks a 10,000-event synthetic stream (tests/integration/
test_simulator_agreement.py); this runs the real benchmark streams at the default pool. The
pipeline draws fresh DP noise every run: the simulator it is compared with is given that run's
aggregates (its noise outcome: which configuration won each round), and also runs under several
draws of its own noise (``--noise-draws``): what moves between those moves with the noise alone.

    .venv/bin/python -m benchmarks.agreement [--streams elec,weather,shift] [--rate 80] [--runs 3] [--add]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from statistics import median

from benchmarks.quality import DATA
from benchmarks.report import RESULTS, provenance, write_result
from fedrift import datasets
from fedrift.access import ADMIN, CLIENT
from fedrift.config import Settings
from fedrift.connection import connect, for_cluster
from fedrift.core.drift import DriftConfig
from fedrift.kafka_io import RecordProducer
from fedrift.monitor import PipelineMonitor, PipelineView
from fedrift.pipeline import Pipeline
from fedrift.produce import clock_for, produce, request_events
from fedrift.provision import provision
from fedrift.simulate import SimConfig, run
from infra.local_kafka import LocalKafka

SYNTHETIC_N = 20_000


def _rows(stream: str) -> tuple[list[str] | None, list]:
    if stream in ("elec", "weather"):
        names, rows = datasets.read_csv(DATA / f"{stream}.csv")
        return names, list(rows)
    return None, list(datasets.synthetic(stream, SYNTHETIC_N, seed=21))


def served(settings: Settings, rows: list, run_id: str, rate: float, log_dir: Path) -> tuple[PipelineView, float]:
    """Run the pipeline on ``rows``; the monitor's view once every request has its prediction."""
    catalog = provision(settings)
    monitor = PipelineMonitor(connect(settings, ADMIN), catalog)
    t0 = time.monotonic()
    try:
        with Pipeline(settings, log_dir) as pipeline:
            pipeline.wait_ready()
            events = request_events(rows, run_id=run_id, clock=clock_for(rate))  # one order: as simulated
            produce(RecordProducer(connect(settings, CLIENT)), catalog, events, rate=rate)
            deadline = time.monotonic() + 300
            while monitor.poll(1).n_predicted < len(rows) and time.monotonic() < deadline:
                pipeline.supervise()
            view = monitor.poll(3)
    finally:
        monitor.close()
    return view, time.monotonic() - t0


def promotions(deployments: list[dict]) -> list[str]:
    return [f"{d['model']}:{d['config_id']}" for d in deployments if d["action"] == "PROMOTE"]


def measured_delays(view: PipelineView) -> dict[str, float]:
    """The pipeline run's delays the simulator is given (``fedrift.inmemory``): trigger to shadow
    start, and request to routing weights that count it."""
    found = {"hpo_latency_s": view.hpo_latency_s(), "control_delay_s": view.control_delay_s()}
    return {k: round(v, 3) for k, v in found.items() if v is not None}


def noise_draws(rows, settings: Settings, stream: str, rate: float, names, draws: int, delays: dict) -> list[dict]:
    """The simulator under ``draws`` draws of the DP noise: how far its accuracy, triggers and
    promotions move with the noise alone (the pipeline draws fresh secure noise every run)."""
    out = []
    for k in range(draws):
        cfg = SimConfig.from_settings(settings, run_id=stream, rate=rate, noise_draw=k, **delays)
        sim = run(rows, cfg, names).result()
        out.append({"accuracy": sim["systems"]["fedrift"]["accuracy"], "triggers": sim["drift"]["triggers"],
                    "promotions": [p["model"] for p in sim["shadow"]["promoted"]]})
    return out


def one(kafka: LocalKafka, stream: str, rate: float, log_root: Path, draws: int = 1) -> dict:
    """One pipeline run on ``stream`` beside the simulator given its aggregates and shadow starts."""
    names, rows = _rows(stream)
    commit = provenance()["commit"]  # the code this run starts (its processes load it now)
    settings = for_cluster(Settings(topic_prefix=f"agree{uuid.uuid4().hex[:6]}.", home=log_root / stream / "home",
                                    n_features=len(rows[0][0])), kafka)
    view, wall = served(settings, rows, stream, rate, log_root / stream / "logs")
    t0 = time.monotonic()
    cfg = SimConfig.from_settings(settings, run_id=stream, rate=rate, **view.replay())
    sim = run(rows, cfg, names)  # the pipeline's noise outcome and its hosts' shadow starts
    replayed = sim.result()
    sim_s = time.monotonic() - t0
    return {
        "stream": stream,
        "n": len(rows),
        "predicted": view.n_predicted,
        "duplicates": view.duplicates,
        "served": view.accuracy(),
        "simulated": replayed["systems"]["fedrift"]["accuracy"],
        "triggers": {"pipeline": view.trigger_positions(), "simulator": replayed["drift"]["triggers"]},
        "pipeline_drift": [(d["source"], d["position"], d["time"]) for d in view.drift if d["drifted"]],
        "promotions": {"pipeline": promotions(view.deployments),
                       "simulator": [p["model"] for p in replayed["shadow"]["promoted"]]},
        "gap_by_window": gap_by_window(_served_by_index(view), sim.correct["fedrift"]),
        # each side's deployments and its clock (the pipeline's: the controller's wall clock, beside
        # the stream's first request time; the simulator's: virtual ms from the first request)
        "deployments": {
            "pipeline": _deployments(view.deployments),
            "pipeline_first_request_ms": min(view.event_times.values(), default=None),
            "simulator": _deployments(sim.pipeline.log["deployments"]),
        },
        "noise_draws": noise_draws(rows, settings, stream, rate, names, draws, measured_delays(view)),
        "delays": measured_delays(view),
        "seconds": {"pipeline": round(wall, 1), "simulator": round(sim_s, 1)},
        "commit": commit,
    }


def _deployments(deployments: list[dict]) -> list[tuple[str, str, str, int]]:
    return [(d["action"], d["model"], d["config_id"], d["time"]) for d in deployments]


def _served_by_index(view: PipelineView) -> list[tuple[int, bool]]:
    """Each labelled served request's correctness at its index in the stream (ids are ``<run>-<i>``)."""
    return [(int(rid.rsplit("-", 1)[1]), pred == view.requests[rid][1]) for rid, (_, pred) in view.served.items()
            if rid in view.requests and view.requests[rid][1] is not None]


def gap_by_window(served: list[tuple[int, bool]], simulated: list[bool], window: int = 1000) -> list[float | None]:
    """Served minus simulated accuracy, points, per ``window`` requests of the stream (where a gap
    arises: the start, a drift, a promotion).

    >>> gap_by_window([(0, True), (1, False), (2, True)], [True, True, True], window=2)
    [-50.0, 0.0]
    """
    out = []
    for start in range(0, len(simulated), window):
        pipe = [ok for order, ok in served if start <= order < start + window]
        sim = simulated[start:start + window]
        out.append(round((sum(pipe) / len(pipe) - sum(sim) / len(sim)) * 100, 2) if pipe else None)
    return out


def same_triggers(t: dict) -> int:
    """How many of the pipeline's triggers the simulator also fired within one analyzer window."""
    window = DriftConfig().window
    return sum(any(abs(a - b) <= window for b in t["simulator"]) for a in t["pipeline"])


def _spread(draws: list[dict]) -> str:
    if not draws:
        return "none"
    acc = f"{min(d['accuracy'] for d in draws) * 100:.2f}–{max(d['accuracy'] for d in draws) * 100:.2f}"
    if len(draws) == 1:
        acc = f"{draws[0]['accuracy'] * 100:.2f}"
    return f"{acc}, {sorted(len(d['promotions']) for d in draws)} ({len(draws)} draw{'s' * (len(draws) > 1)})"


def _median_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    return f"{median(values):+.2f} ({min(values):+.2f} to {max(values):+.2f})"


def table(results: list[dict]) -> str:
    """One row per stream: the gap's median and range over its pipeline runs, and per run the
    triggers both sides fired (within one window) and the promotions of each side."""
    window = DriftConfig().window
    lines = [
        f"| stream | n | runs | served (pipeline), median | gap, points: median (range) | "
        f"triggers in both (± {window} events) / pipeline / simulator, per run | "
        f"promotions pipeline / simulator, per run | simulator over noise draws: accuracy, promotions | "
        f"s pipeline / simulator, median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stream in dict.fromkeys(r["stream"] for r in results):
        runs = [r for r in results if r["stream"] == stream and r["served"] is not None]
        if not runs:
            lines.append(f"| {stream} | | 0 | n/a | n/a | | | | |")
            continue
        short = [f"{r['predicted']} of {r['n']}" for r in runs if r["predicted"] < r["n"]]
        trig = ", ".join(f"{same_triggers(r['triggers'])}/{len(r['triggers']['pipeline'])}/"
                         f"{len(r['triggers']['simulator'])}" for r in runs)
        promo = ", ".join(f"{len(r['promotions']['pipeline'])}/{len(r['promotions']['simulator'])}" for r in runs)
        draws = [d for r in runs for d in r.get("noise_draws", [])]
        wall = [r["seconds"]["pipeline"] for r in runs], [r["seconds"]["simulator"] for r in runs]
        lines.append(
            f"| {stream} | {runs[0]['n']} | {len(runs)} | {median(r['served'] for r in runs) * 100:.2f}"
            f"{' (predicted ' + ', '.join(short) + ')' if short else ''} | "
            f"{_median_range([(r['served'] - r['simulated']) * 100 for r in runs])} | {trig} | {promo} | "
            f"{_spread(draws)} | {median(wall[0]):.0f} / {median(wall[1]):.0f} |"
        )
    return "\n".join(lines)


def _kept(name: str, streams: list[str]) -> list[dict]:
    """The runs of other streams in the last results (each names its commit)."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    return [{"commit": old["provenance"]["commit"], **r} for r in old["results"] if r["stream"] not in streams]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", default="elec,weather,shift")
    ap.add_argument("--rate", type=float, default=80.0,
                    help="requests/s, the simulator's virtual rate too (on 2 cores the default pool served "
                         "elec's 45,312 requests in 645-731 s at 80/s; it fell far behind 250/s)")
    ap.add_argument("--noise-draws", type=int, default=1,
                    help="simulator runs of its own DP noise, beside the first pipeline run of each stream")
    ap.add_argument("--runs", type=int, default=3, help="pipeline runs per stream (each its own topics)")
    ap.add_argument("--add", action="store_true",
                    help="keep the other streams' runs already in the results file")
    ap.add_argument("--name", default="agreement", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1] / ".fedrift" / "bench"
    streams = args.streams.split(",")
    results = _kept(args.name, streams) if args.add else []
    data = [DATA / f"{s}.csv" for s in sorted({*streams, *(r["stream"] for r in results)}) if s in ("elec", "weather")]
    kafka = LocalKafka(root, base_port=39092)
    started = kafka.start() != "already running"
    try:
        for stream in streams:
            for k in range(args.runs):
                results.append(one(kafka, stream, args.rate, root / "agreement", args.noise_draws if k == 0 else 0))
                text = table(results)  # written after every run: a long benchmark keeps what it measured
                write_result(args.name, {"args": vars(args), "results": results, "table": text}, data)
    finally:
        if started:
            kafka.stop()
    print(text)

if __name__ == "__main__":
    main()

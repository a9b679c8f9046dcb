"""Quality benchmark: `fedrift simulate` on real and synthetic drifting streams, against the patent
baseline, uniform routing, every pool member alone and the per-window oracle; plus recovery after
abrupt drifts. Prints a Markdown table (for BENCHMARKS.md) and writes the results as JSON with their provenance.

    .venv/bin/python -m benchmarks.quality [--jobs 2] [--n 20000] [--seed 0] [--streams elec,weather,...]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.report import write_result
from fedrift import datasets
from fedrift.config import Settings
from fedrift.simulate import SimConfig, run

# the benchmark streams live beside the repository (never copied into it); BENCHMARK_DATA overrides
DATA = Path(os.environ.get("BENCHMARK_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
STREAMS = ("elec", "weather", "sea", "agrawal", "hyperplane", "rbf")
ABRUPT = ("sea", "agrawal")  # concept switches at n/4, n/2, 3n/4


def _rows(stream: str, n: int, seed: int):
    if stream in ("elec", "weather"):
        names, rows = datasets.read_csv(DATA / f"{stream}.csv")
        return names, rows
    return None, datasets.synthetic(stream, n, seed)


def recovery(correct: np.ndarray, drift_at: int, segment_end: int, window: int = 250) -> int | None:
    """Events after ``drift_at`` until the rolling accuracy is back within 2 points of the
    post-drift level (mean accuracy over the second half of the segment)."""
    level = correct[(drift_at + segment_end) // 2 : segment_end].mean()
    rolling = np.convolve(correct[drift_at:segment_end].astype(float), np.ones(window) / window, mode="valid")
    hits = np.nonzero(rolling >= level - 0.02)[0]
    return int(hits[0] + window) if len(hits) else None


def one(stream: str, n: int, seed: int) -> dict:
    names, rows = _rows(stream, n, seed)
    t0 = time.perf_counter()
    sim = run(rows, SimConfig.from_settings(Settings(), seed=seed), names)
    elapsed = time.perf_counter() - t0
    res = sim.result()
    res["stream"], res["seconds"] = stream, round(elapsed, 1)
    if stream in ABRUPT:
        corr = sim.system_correct()
        q = res["n"] // 4
        res["recovery"] = {
            name: [recovery(corr[name], k * q, (k + 1) * q) for k in (1, 2, 3)] for name in ("fedrift", "patent")
        }
    return res


def _gap(g: dict) -> str:
    return f"{g['gap'] * 100:+.2f} ({g['low'] * 100:+.2f}, {g['high'] * 100:+.2f})"


def _zoo(stream: str, n: int, seed: int) -> str:
    from benchmarks.zoo import zoo_best  # zoo imports this module

    z = zoo_best(stream, n, seed)
    if z is None:
        return "n/a (run benchmarks.zoo)"
    return f"{z['accuracy'] * 100:.2f} ({z['member']}, {z['events_per_s']:.0f}/s)"


def table(results: list[dict]) -> str:
    head = (
        "| stream | n | fedrift | patent | uniform | best single | zoo best (events/s) | oracle_window "
        "| fedrift κt | patent κt "
        "| fedrift − best single, points (95% CI) | triggers | HPO rounds | promoted/rejected | max ε | s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s = r["systems"]
        best = r["comparison"]["vs_best_single"]["against"]

        def pct(k: str, s=s) -> str:
            return f"{s[k]['accuracy'] * 100:.2f}"

        lines.append(
            f"| {r['stream']} | {r['n']} | **{pct('fedrift')}** | {pct('patent')} | {pct('uniform')} | "
            f"{pct(best)} ({best[6:]}) | {_zoo(r['stream'], r['n'], r['seed'])} | {pct('oracle_window')} | "
            f"{s['fedrift']['kappa_temporal']:.3f} | "
            f"{s['patent']['kappa_temporal']:.3f} | {_gap(r['comparison']['vs_best_single'])} | "
            f"{len(r['drift']['triggers'])} | {r['hpo']['rounds']} | "
            f"{r['shadow']['promotions']}/{r['shadow']['rejections']} | {r['privacy']['epsilon_spent_max']:.1f} | "
            f"{r['seconds']} |"
        )
    rec = [r for r in results if "recovery" in r]
    if rec:
        lines += ["", "| stream | recovery after drift 1/2/3, fedrift (events) | patent (events) |", "|---|---|---|"]
        for r in rec:
            lines.append(f"| {r['stream']} | {r['recovery']['fedrift']} | {r['recovery']['patent']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", default=",".join(STREAMS))
    ap.add_argument("--n", type=int, default=20_000, help="events per synthetic stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    streams = args.streams.split(",")
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, streams, [args.n] * len(streams), [args.seed] * len(streams)))
    text = table(results)
    print(text)
    data = [DATA / f"{s}.csv" for s in streams if s in ("elec", "weather")]
    write_result(f"quality-seed{args.seed}", {"args": vars(args), "results": results, "table": text}, data)


if __name__ == "__main__":
    main()

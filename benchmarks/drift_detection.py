"""Drift-detection benchmark: detection delay on streams with real input drift and false alarms per
100k events on stable streams, for fedrift's DriftAnalyzer against River's ADWIN and PageHinkley
fed the same signal (the analyzer's per-window drift score).

    .venv/bin/python -m benchmarks.drift_detection [--n 100000]
"""

from __future__ import annotations

import argparse

import numpy as np
from river import drift
from river.datasets import synth

from benchmarks.report import write_result
from fedrift.core.drift import DriftAnalyzer, DriftConfig

CHANGE = 20_000  # where the drifting cases change


def _river_rows(stream, n):
    keys = None
    for x, _ in stream.take(n):
        keys = keys or sorted(x)
        yield [float(x[k]) for k in keys]


def stable_cases(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "gaussian 5-d": iter(rng.normal(size=(n, 5)).tolist()),
        "RandomRBF (no drift)": _river_rows(synth.RandomRBF(seed_model=seed, seed_sample=seed, n_features=10), n),
        "LED (no drift)": _river_rows(synth.LED(seed=seed, noise_percentage=0.1, irrelevant_features=True), n),
    }


def drifting_cases(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)

    def covariate(shift: float):
        x = rng.normal(size=(n, 5))
        x[CHANGE:, 1] += shift
        return iter(x.tolist())

    def chain(a, b):
        yield from _river_rows(a, CHANGE)
        yield from _river_rows(b, n - CHANGE)

    return {
        "covariate shift +1σ on 1 of 5 features": covariate(1.0),
        "covariate shift +0.5σ on 1 of 5 features": covariate(0.5),
        "RandomRBF → RandomRBFDrift (moving centroids)": chain(
            synth.RandomRBF(seed_model=seed, seed_sample=seed, n_features=10),
            synth.RandomRBFDrift(
                seed_model=seed, seed_sample=seed + 1, n_features=10, change_speed=0.001, n_drift_centroids=50
            ),
        ),
        "LED → LEDDrift (7 features swapped)": chain(
            synth.LED(seed=seed, noise_percentage=0.1, irrelevant_features=True),
            synth.LEDDrift(seed=seed + 1, noise_percentage=0.1, irrelevant_features=True, n_drift_features=7),
        ),
    }


def detect(rows, seed: int) -> dict[str, list[int]]:
    """Positions where each detector fires. The analyzer's own triggers (with its hysteresis and
    reference reset), and ADWIN / PageHinkley run on the analyzer's per-window score series."""
    analyzer = DriftAnalyzer(DriftConfig(), seed=seed)
    adwin, ph = drift.ADWIN(), drift.PageHinkley()
    out = {"fedrift": [], "ADWIN": [], "PageHinkley": []}
    for x in rows:
        r = analyzer.update(x)
        if r is None or r.source == "error":
            continue
        if r.triggered:
            out["fedrift"].append(r.position)
        for name, det in (("ADWIN", adwin), ("PageHinkley", ph)):
            det.update(r.score)
            if det.drift_detected:
                out[name].append(r.position)
    return out


HEAD = "| stream | fedrift | ADWIN | PageHinkley |\n|---|---|---|---|"


def stable_table(n: int, seeds: int) -> str:
    """False alarms per 100k events on each stable stream, mean over seeds."""
    lines = [HEAD.replace("| stream", "| stable stream")]
    for name in stable_cases(10, 0):
        counts: dict[str, list[float]] = {k: [] for k in ("fedrift", "ADWIN", "PageHinkley")}
        for seed in range(seeds):
            hits = detect(stable_cases(n, seed)[name], seed)
            for k, v in hits.items():
                counts[k].append(len(v) * 100_000 / n)
        lines.append(f"| {name} | " + " | ".join(f"{np.mean(counts[k]):.1f}" for k in counts) + " |")
    return "\n".join(lines)


def drifting_table(seeds: int) -> str:
    """Events from the change to the first detection (median over seeds), early alarms in brackets."""
    lines = [HEAD.replace("| stream", "| drifting stream")]
    for name in drifting_cases(CHANGE + 1, 0):
        cells: dict[str, tuple[list, int]] = {k: ([], 0) for k in ("fedrift", "ADWIN", "PageHinkley")}
        for seed in range(seeds):
            hits = detect(drifting_cases(CHANGE + 20_000, seed)[name], seed)
            for k, v in hits.items():
                after = [p - CHANGE for p in v if p > CHANGE]
                delays, early = cells[k]
                delays.append(after[0] if after else None)
                cells[k] = (delays, early + sum(p <= CHANGE for p in v))
        row = []
        for delays, early in cells.values():
            found = [d for d in delays if d is not None]
            missed = f"missed {len(delays) - len(found)}/{len(delays)}"
            if not found:
                row.append(missed)
                continue
            row.append(f"{int(np.median(found))} ({early})" + (f", {missed}" if len(found) < len(delays) else ""))
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    text = (
        f"False alarms per 100k events (n = {args.n}, mean over {args.seeds} seeds):\n\n"
        f"{stable_table(args.n, args.seeds)}\n\n"
        f"Events from the change at {CHANGE} to the first detection (median over {args.seeds} seeds; "
        f"alarms before the change in brackets):\n\n{drifting_table(args.seeds)}"
    )
    print(text)
    write_result("drift_detection", {"args": vars(args), "table": text})


if __name__ == "__main__":
    main()

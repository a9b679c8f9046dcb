"""Privacy–utility: fedrift's served accuracy as the ε of each HPO round shrinks.

Each round a host publishes ``1 + n_shared + n_local`` metrics; ε per round is split over them
as shipped (4/5 on the quality, 1/5 on the latency). The budget per record is set so that each
model may run one round per scoring slice at that ε, as the shipped defaults do (2.5 per round,
budget 10 over 4 models), so the sweep changes the noise, not how many rounds run. ε = ∞
publishes exact metrics. Reported: accuracy, its paired gap to ε = ∞ (95 % interval by batch
means), HPO rounds, promotions, and the largest ε any record spent across the pool.

    .venv/bin/python -m benchmarks.privacy_utility [--jobs 2] [--n 10000] [--eps inf,8,2,1,0.5] [--noise local]
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from itertools import product

import numpy as np

from benchmarks.quality import DATA, _rows
from benchmarks.report import write_result
from fedrift.config import Settings
from fedrift.core.metrics import paired_gap
from fedrift.simulate import SimConfig, run

STREAMS = ("elec", "weather", "sea", "agrawal", "hyperplane", "rbf", "stagger", "led")
EPSILONS = (math.inf, 8.0, 2.0, 1.0, 0.5)


def settings_for(eps_round: float, base: Settings | None = None, distributed: bool = True) -> Settings:
    """Shipped settings with ``eps_round`` spread over a round's metrics as the defaults spread 2.5.

    >>> s = settings_for(2.5)
    >>> round(s.fhpo.epsilon_quality, 6), round(s.fhpo.epsilon_latency, 6), s.epsilon_budget
    (0.4, 0.1, 10.0)
    """
    base = base or Settings()
    fh = base.fhpo
    per_metric = eps_round / (1 + fh.n_shared + fh.n_local)
    fhpo = replace(fh, epsilon_quality=0.8 * per_metric, epsilon_latency=0.2 * per_metric,
                   distributed_noise=distributed)
    return replace(base, fhpo=fhpo, epsilon_budget=eps_round * len(base.models))


def one(stream: str, eps_round: float, n: int, seed: int, distributed: bool) -> dict:
    names, rows = _rows(stream, n, seed)
    rows = list(rows)[:n]
    t0 = time.perf_counter()
    sim = run(rows, SimConfig.from_settings(settings_for(eps_round, distributed=distributed), seed=seed), names)
    res = sim.result()
    return {"stream": stream, "eps_round": eps_round, "n": res["n"], "seconds": round(time.perf_counter() - t0, 1),
            "accuracy": res["systems"]["fedrift"]["accuracy"], "hpo_rounds": res["hpo"]["rounds"],
            "promotions": res["shadow"]["promotions"], "eps_spent_max": res["privacy"]["epsilon_spent_max"],
            "correct": sim.system_correct()["fedrift"].astype(int).tolist()}


def _eps(e: float) -> str:
    return "∞" if math.isinf(e) else f"{e:g}"


def add_gaps(results: list[dict]) -> None:
    """Each finite-ε run's paired gap to the same stream's ε = ∞ run (points, 95 % interval)."""
    exact = {r["stream"]: np.array(r["correct"]) for r in results if math.isinf(r["eps_round"])}
    for r in results:
        if not math.isinf(r["eps_round"]) and r["stream"] in exact:
            g = paired_gap(np.array(r["correct"]), exact[r["stream"]], batch=500)
            r["gap_to_inf"] = {"mean": g.mean * 100, "low": g.low * 100, "high": g.high * 100}


def table(results: list[dict], epsilons: list[float]) -> str:
    head = ("| stream | n | " + " | ".join(f"ε={_eps(e)}" for e in epsilons)
            + " | HPO rounds | promoted | max ε per record |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    gaps: dict[float, list[float]] = {e: [] for e in epsilons}
    for stream in dict.fromkeys(r["stream"] for r in results):
        by_eps = {r["eps_round"]: r for r in results if r["stream"] == stream}
        cells = []
        for e in epsilons:
            r = by_eps[e]
            cell = f"{r['accuracy'] * 100:.2f}"
            if "gap_to_inf" in r:
                g = r["gap_to_inf"]
                gaps[e].append(g["mean"])
                cell += f" ({g['mean']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}])"
            cells.append(cell)
        per_eps = ["/".join(str(by_eps[e][k]) for e in epsilons) for k in ("hpo_rounds", "promotions")]
        spent = "/".join(f"{by_eps[e]['eps_spent_max']:g}" for e in epsilons)
        lines.append(f"| {stream} | {by_eps[epsilons[0]]['n']} | " + " | ".join(cells)
                     + f" | {per_eps[0]} | {per_eps[1]} | {spent} |")
    mean = " | ".join("—" if not gaps[e] else f"{np.mean(gaps[e]):+.2f}" for e in epsilons)
    lines.append(f"| mean gap to ε=∞, points | | {mean} | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", default=",".join(STREAMS))
    ap.add_argument("--eps", default=",".join(_eps(e).replace("∞", "inf") for e in EPSILONS))
    ap.add_argument("--n", type=int, default=10_000, help="events per stream (the first n of a real one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--noise", choices=("distributed", "local"), default="distributed",
                    help="masked metrics carry a (t − 1)-th of the noise (shipped) or the full local mechanism")
    args = ap.parse_args()
    streams, epsilons = args.streams.split(","), [float(e) for e in args.eps.split(",")]
    runs = list(product(streams, epsilons))
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, *zip(*runs, strict=True), [args.n] * len(runs), [args.seed] * len(runs),
                                [args.noise == "distributed"] * len(runs)))
    add_gaps(results)
    for r in results:
        del r["correct"]  # per-event hits: the paired gaps are kept, the hits are too bulky
    text = table(results, epsilons)
    print(text)
    data = [DATA / f"{s}.csv" for s in streams if s in ("elec", "weather")]
    write_result(f"privacy_utility-{args.noise}", {"args": vars(args), "results": results, "table": text}, data)


if __name__ == "__main__":
    main()

"""The reference zoo on every benchmark stream: each River family alone with its library defaults
(``fedrift/zoo.py``), prequential accuracy and events/s on one core. The best per stream becomes
the zoo column of the quality table (``benchmarks/quality.py`` reads ``results/zoo.json``).

    .venv/bin/python -m benchmarks.zoo [--streams elec,weather,...] [--n 20000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor

from benchmarks.quality import DATA, STREAMS, _rows
from benchmarks.report import RESULTS, write_result
from fedrift.zoo import ZOO, prequential


def one(stream: str, member: str, n: int, seed: int) -> dict:
    _, rows = _rows(stream, n, seed)
    r = prequential(member, rows)
    return {"stream": stream, "member": member, "n": r.n, "seed": seed, "accuracy": r.accuracy,
            "events_per_s": r.events_per_s}


def best_by_stream(results: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for r in results:
        if r["stream"] not in best or r["accuracy"] > best[r["stream"]]["accuracy"]:
            best[r["stream"]] = r
    return best


def table(results: list[dict]) -> str:
    streams = list(dict.fromkeys(r["stream"] for r in results))
    members = list(dict.fromkeys(r["member"] for r in results))
    acc = {(r["stream"], r["member"]): r for r in results}
    best = best_by_stream(results)
    lines = ["| member (River defaults) | " + " | ".join(streams) + " | events/s (median over streams) |",
             "|---|" + "---|" * (len(streams) + 1)]
    for m in members:
        cells = []
        for s in streams:
            cell = f"{acc[s, m]['accuracy'] * 100:.2f}"
            cells.append(f"**{cell}**" if best[s]["member"] == m else cell)
        rates = sorted(acc[s, m]["events_per_s"] for s in streams)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {rates[len(rates) // 2]:.0f} |")
    return "\n".join(lines)


def zoo_best(stream: str, n: int, seed: int) -> dict | None:
    """The zoo's best on ``stream`` from the last zoo run on the same events, if there is one."""
    path = RESULTS / "zoo.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    same = [r for r in data["results"] if r["stream"] == stream and r["n"] == n]
    # a CSV stream is the same whatever the seed; a synthetic one is not
    rows = [r for r in same if stream in ("elec", "weather") or r.get("seed") == seed]
    return max(rows, key=lambda r: r["accuracy"]) if rows else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", default=",".join(STREAMS))
    ap.add_argument("--members", default=",".join(ZOO))
    ap.add_argument("--n", type=int, default=20_000, help="events per synthetic stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    pairs = [(s, m) for s in args.streams.split(",") for m in args.members.split(",")]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one, s, m, args.n, args.seed) for s, m in pairs]
        results = [f.result() for f in futures]
    text = table(results)
    print(text)
    data = [DATA / f"{s}.csv" for s in args.streams.split(",") if s in ("elec", "weather")]
    write_result("zoo", {"args": vars(args), "results": results, "table": text}, data)


if __name__ == "__main__":
    main()

"""Soak: a long labelled stream through the whole pipeline on a local 3-node cluster, with a kill
of each kind (a host, the Faust worker, the broker leading request partition 0) every
``--kill-every`` requests in turn, then the per-request-id exactly-once check
(``fedrift.exactly_once``). Prints the verdict and the wall time; writes JSON with provenance.

    .venv/bin/python -m benchmarks.soak [--n 1000000] [--rate 1500] [--kill-every 100000]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.report import write_result
from fedrift.access import ADMIN
from fedrift.config import Settings
from fedrift.connection import connect, for_cluster
from fedrift.exactly_once import shared_hosts, verdict, wait_learned
from fedrift.faults import BROKER, run_with_kills
from fedrift.pipeline import Pipeline
from fedrift.provision import provision
from infra.local_kafka import LocalKafka


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=1500.0)
    ap.add_argument("--kill-every", type=int, default=100_000)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="fedrift-soak-"))
    cluster = LocalKafka(Path(__file__).resolve().parents[1] / ".fedrift" / "soak", nodes=3, base_port=39192,
                         secure=True)
    settings = Settings(bootstrap_servers="", topic_prefix=f"soak{uuid.uuid4().hex[:6]}.", home=home,
                        models=("gnb", "linear"), replicas=2, partitions=4, n_features=5)
    victims = itertools.cycle(["host-gnb-0", "streams-controller", BROKER, "host-linear-1"])
    kills = {at: next(victims) for at in range(args.kill_every, args.n, args.kill_every)}
    t0 = time.monotonic()
    cluster.start(timeout=120)
    try:
        settings = for_cluster(settings, cluster)
        catalog = provision(settings)
        admin = connect(settings, ADMIN)
        with Pipeline(settings, home / "logs") as pipeline:
            pipeline.wait_ready()
            run = run_with_kills(pipeline, cluster, catalog, args.n, args.rate, kills, run_id="soak")
            wait_learned(admin, catalog, settings.models, args.n, 600, pipeline.supervise, shared_hosts(settings))
            restarts = pipeline.supervise()
            acked = sorted(run["acked"])
            result = verdict(admin, catalog, acked, acked, settings.models, timeout=600, hosts=shared_hosts(settings))
    finally:
        cluster.stop()
    wall = time.monotonic() - t0
    summary = {
        "requests": args.n,
        "acked": len(acked),
        "killed": run["killed"],
        "restarts": restarts,
        "missing": len(result.missing),
        "duplicated": len(result.duplicated),
        "unexpected": len(result.unexpected),
        "learned": result.learned,
        "learned_digest_ok": result.digest_ok,
        "host_digest_ok": result.host_digest_ok,
        "exactly_once": result.exactly_once and len(acked) == args.n,
        "wall_s": round(wall, 1),
    }
    text = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in summary.items())])
    print(text)
    write_result("soak", {"args": vars(args), "summary": summary, "table": text})


if __name__ == "__main__":
    main()

"""Pipeline throughput and latency on a real local broker, against baselines run in the same
process on the same broker:

* raw: confluent-kafka produce→consume of the pipeline's request records, batched (the ceiling
  of the broker and client on this machine);
* raw pass-through: consume a request and produce a record for it, one at a time at the paced
  rate (the latency floor, measured at the same points as the pipeline's);
* models: the pool's own predict+learn rate in one process (every model scores every request);
* the pipeline with a cheap pool (linear only) and with the default pool: requests produced as
  fast as possible, rate = requests / (last prediction − first request), by the topics' own
  timestamps; then a paced run at half the measured rate for request→prediction latency, and
  the delay from a weights record on ``routing.weights`` to the first prediction served under it.

Everything runs on a SASL_SSL broker with ACLs (as shipped) and on a PLAINTEXT one, so the table
also shows what TLS and SCRAM cost. Each figure is the median and range over ``--runs`` runs. The
table is printed and written as JSON (with the commit and package versions) to
``benchmarks/results/pipeline_throughput.json``.

    .venv/bin/python -m benchmarks.pipeline_throughput [--runs 3] [--raw-n 200000] [--n 30000] [--security both]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from benchmarks.report import spread, write_result
from fedrift import datasets
from fedrift.access import ADMIN, CLIENT
from fedrift.config import Settings
from fedrift.connection import Connection, connect, for_cluster
from fedrift.core.models import FAMILIES
from fedrift.kafka_io import RecordProducer, create_topics
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.provision import provision
from fedrift.topics import PREDICTIONS, REQUESTS, ROUTING_WEIGHTS, ResolvedTopic, TopicCatalog
from infra.local_kafka import LocalKafka
from schemas import codec

FAST = {"linger.ms": 20, "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000}


def _consumer(conn: Connection, **extra) -> Consumer:
    return Consumer(conn.conf(**{"group.id": conn.group("bench"), "auto.offset.reset": "earliest",
                                 "enable.auto.commit": False, "log_level": 3, **extra}))


def _requests(n: int, seed: int) -> list[bytes]:
    return [codec().encode("InferenceRequest", {"id": f"r{i}", "event_time": 0, "features": x, "label": y})
            for i, (x, y) in enumerate(datasets.synthetic("shift", n, seed))]


def _topic(conn: Connection, partitions: int = 3) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    create_topics(conn, [ResolvedTopic(name, "InferenceRequest", partitions, 0, "delete", None)])
    return name


def raw_ceiling(conn: Connection, n: int) -> float:
    """Records/s produced and consumed, batched as well as confluent-kafka allows."""
    topic, values = _topic(conn), _requests(n, 1)
    c = _consumer(conn, **{"fetch.min.bytes": 100_000})
    c.subscribe([topic])
    while not c.assignment():
        c.poll(0.1)
    p = Producer(conn.conf(**{"acks": "all", "enable.idempotence": True, **FAST}))
    got = 0

    def read() -> None:
        nonlocal got
        while got < n:
            got += sum(1 for m in c.consume(10_000, 0.2) if m.error() is None)

    reader = threading.Thread(target=read)
    t0 = time.perf_counter()
    reader.start()
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, f"r{i}".encode())
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    reader.join()
    elapsed = time.perf_counter() - t0
    c.close()
    return n / elapsed


def raw_pass_through_latency(conn: Connection, n: int, rate: float) -> np.ndarray:
    """Request CreateTime → pass-through record CreateTime (ms): consume one, produce one."""
    src, dst, values = _topic(conn), _topic(conn), _requests(n, 2)
    stop = threading.Event()

    def relay() -> None:
        c, p = _consumer(conn), Producer(conn.conf(**{"acks": "all", "linger.ms": 0}))
        c.subscribe([src])
        while not stop.is_set():
            for m in c.consume(100, 0.05):
                if m.error() is None:
                    p.produce(dst, m.value(), m.key())
            p.poll(0)
        p.flush()
        c.close()

    thread = threading.Thread(target=relay)
    thread.start()
    time.sleep(3)  # the relay's group is assigned
    _paced(conn, src, values, rate)
    got = _read(conn, [src, dst], 2 * n)
    stop.set()
    thread.join()
    sent = {m.key(): m.timestamp()[1] for m in got if m.topic() == src}
    return np.array([m.timestamp()[1] - sent[m.key()] for m in got if m.topic() == dst and m.key() in sent])


def _paced(conn: Connection, topic: str, values: list[bytes], rate: float) -> None:
    p = Producer(conn.conf(**{"acks": "all", "linger.ms": 0}))
    t0 = time.monotonic()
    for i, v in enumerate(values):
        p.produce(topic, v, f"r{i}".encode())
        p.poll(0)
        ahead = (i + 1) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    p.flush()


def _read(conn: Connection, topics: list[str], n: int, timeout: float = 600.0, count=None) -> list:
    """Read ``topics`` (read_committed) until ``count(messages)`` (default: how many) reaches ``n``."""
    c = _consumer(conn, **{"isolation.level": "read_committed"})
    c.subscribe(topics)
    got, deadline = [], time.monotonic() + timeout
    count = count or len
    while count(got) < n and time.monotonic() < deadline:
        got += [m for m in c.consume(10_000, 0.2) if m.error() is None]
    c.close()
    return got


def _predictions_and_requests(catalog: TopicCatalog, run_id: str):
    """A ``count`` for ``_read``: the fewer of the run's requests and predictions read so far
    (the request topic also carries routing-weights markers, which must not count)."""
    def count(msgs: list) -> int:
        ours = [m.topic() for m in msgs if (m.key() or b"").decode().startswith(f"{run_id}-")]
        return min(ours.count(catalog.name(REQUESTS)), ours.count(catalog.name(PREDICTIONS)))
    return count


def models_ceiling(models: tuple[str, ...], n: int) -> float:
    """Requests/s when one instance of every model predicts and learns each request in one process."""
    rows = list(datasets.synthetic("shift", n, 3))
    pool = {m: FAMILIES[m].build(FAMILIES[m].defaults) for m in models}
    t0 = time.perf_counter()
    for x, y in rows:
        for model in pool.values():
            model.predict_proba_one(x)
            model.learn_one(x, y)
    return n / (time.perf_counter() - t0)


def pipeline_run(kafka: LocalKafka, models: tuple[str, ...], replicas: int, n: int, home: Path) -> dict:
    """Maximum rate, then latency and weights-in-force delay at half of it, on fresh topics."""
    settings = for_cluster(Settings(topic_prefix=f"b{uuid.uuid4().hex[:6]}.", models=models, replicas=replicas,
                                    home=home, n_features=5), kafka)
    catalog = provision(settings)
    conn, client = connect(settings, ADMIN), connect(settings, CLIENT)
    # one stream for both phases: its concept change (at 3n/4) falls in the burst, so the paced
    # phase runs on a settled concept, as a latency measurement of the data path should
    rows = list(datasets.synthetic("shift", n + n // 2, 5))
    with Pipeline(settings, home / "logs" / settings.topic_prefix) as pipeline:
        pipeline.wait_ready()
        producer = RecordProducer(client, FAST)
        produce(producer, catalog, request_events(rows[:n], run_id="max"))
        msgs = _read(conn, [catalog.name(REQUESTS), catalog.name(PREDICTIONS)], n,
                     count=_predictions_and_requests(catalog, "max"))
        first = min(m.timestamp()[1] for m in msgs if m.topic() == catalog.name(REQUESTS))
        last = max(m.timestamp()[1] for m in msgs if m.topic() == catalog.name(PREDICTIONS))
        rate = n / ((last - first) / 1000)
        paced_n = int(min(n // 2, rate * 20))  # up to ~40 s at half load
        time.sleep(15)  # the HPO round the concept change started ends before latency is measured
        produce(RecordProducer(client, {"linger.ms": 0}), catalog,
                request_events(rows[n : n + paced_n], run_id="half"), rate=rate / 2)
        msgs = _read(conn, [catalog.name(t) for t in (REQUESTS, PREDICTIONS, ROUTING_WEIGHTS)],
                     paced_n, timeout=300, count=_predictions_and_requests(catalog, "half"))
        pipeline.supervise()
    return {"events_per_s": rate, **_latencies(msgs, catalog)}


def _latencies(msgs: list, catalog: TopicCatalog) -> dict:
    requests, predictions, published = {}, {}, {}
    for m in msgs:
        name, v = codec().decode(m.value())
        if m.topic() == catalog.name(REQUESTS) and name == "InferenceRequest" and v["id"].startswith("half"):
            requests[v["id"]] = m.timestamp()[1]
        elif m.topic() == catalog.name(PREDICTIONS) and v["request_id"].startswith("half"):
            predictions[v["request_id"]] = (m.timestamp()[1], v["routing_version"])
        elif m.topic() == catalog.name(ROUTING_WEIGHTS):
            published[v["version"]] = m.timestamp()[1]
    lat = np.array([t - requests[k] for k, (t, _) in predictions.items() if k in requests])
    first_served: dict[int, int] = {}
    for t, version in predictions.values():
        first_served[version] = min(t, first_served.get(version, t))
    in_force = [first_served[v] - published[v] for v in first_served if v in published and v > 0]
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "weights_in_force_ms": float(np.median(in_force)) if in_force else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--raw-n", type=int, default=200_000)
    ap.add_argument("--n", type=int, default=30_000, help="requests of each pipeline run at full speed")
    ap.add_argument("--security", choices=["both", *MODES], default="both",
                    help="the broker's listener: SASL_SSL with ACLs (as shipped), PLAINTEXT, or both in turn")
    args = ap.parse_args()
    default = Settings()
    pools = {"cheap (linear × 2)": (("linear",), 2), f"default ({','.join(default.models)} × 3)": (default.models, 3)}
    modes = list(MODES) if args.security == "both" else [args.security]
    results = {mode: measure(mode, pools, default.models, args) for mode in modes}
    text = "\n\n".join(f"**{mode}**\n\n{table(runs, pools)}" for mode, runs in results.items())
    if len(modes) == 2:
        text += "\n\n" + tls_cost(results, pools)
    print(text)
    write_result("pipeline_throughput", {"args": vars(args), "pools": list(pools), "runs": results, "table": text})


MODES = {"SASL_SSL": 39292, "PLAINTEXT": 39092}  # each on its own broker and port


def measure(mode: str, pools: dict, models: tuple[str, ...], args) -> dict:
    """Every path, ``args.runs`` times, on a fresh local broker whose listener is ``mode``."""
    kafka = LocalKafka(Path(__file__).resolve().parents[1] / ".fedrift" / "bench", base_port=MODES[mode],
                       secure=mode == "SASL_SSL")
    kafka.start()
    conn = Connection(kafka.bootstrap, kafka.client_config())
    runs: dict[str, list] = {"raw": [], "raw_latency": [], "models": []} | {p: [] for p in pools}
    try:
        for _ in range(args.runs):
            runs["raw"].append(raw_ceiling(conn, args.raw_n))
            lat = raw_pass_through_latency(conn, 5000, 500.0)
            runs["raw_latency"].append({"p50_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99))})
            runs["models"].append(models_ceiling(models, 5000))
            for name, (pool, replicas) in pools.items():
                runs[name].append(pipeline_run(kafka, pool, replicas, args.n, Path(tempfile.mkdtemp())))
    finally:
        kafka.stop()
    return runs


def tls_cost(results: dict, pools: dict) -> str:
    """SASL_SSL beside PLAINTEXT: the ratio of the medians, per path."""
    rows = ["| path | events/s SASL_SSL / PLAINTEXT | p99 SASL_SSL / PLAINTEXT |", "|---|---|---|"]
    sec, plain = results["SASL_SSL"], results["PLAINTEXT"]
    med = statistics.median
    raw_p99 = med(r["p99_ms"] for r in sec["raw_latency"]) / med(r["p99_ms"] for r in plain["raw_latency"])
    rows.append(f"| raw confluent-kafka | {med(sec['raw']) / med(plain['raw']):.2f} | {raw_p99:.2f} |")
    for name in pools:
        rate = med(x["events_per_s"] for x in sec[name]) / med(x["events_per_s"] for x in plain[name])
        p99 = med(x["p99_ms"] for x in sec[name]) / med(x["p99_ms"] for x in plain[name])
        rows.append(f"| pipeline, {name} | {rate:.2f} | {p99:.2f} |")
    return "\n".join(rows)


def table(runs: dict, pools: dict) -> str:
    raw = statistics.median(runs["raw"])
    models = statistics.median(runs["models"])
    lines = [
        "| path | events/s median (range) | vs raw | vs models in-process | p50 ms | p99 ms | weights in force ms |",
        "|---|---|---|---|---|---|---|",
        f"| raw confluent-kafka, batched | {spread(runs['raw'])} | 1 | | "
        f"{spread([r['p50_ms'] for r in runs['raw_latency']], 1)} | "
        f"{spread([r['p99_ms'] for r in runs['raw_latency']], 1)} | |",
        f"| default pool in one process (predict+learn) | {spread(runs['models'])} | | 1 | | | |",
    ]
    for name in pools:
        r = runs[name]
        rate = statistics.median(x["events_per_s"] for x in r)
        vs_models = f"{rate / models:.2f}" if name.startswith("default") else ""
        lines.append(
            f"| pipeline, {name} | {spread([x['events_per_s'] for x in r])} | {rate / raw:.3f} | {vs_models} | "
            f"{spread([x['p50_ms'] for x in r], 1)} | {spread([x['p99_ms'] for x in r], 1)} | "
            f"{spread([x['weights_in_force_ms'] for x in r])} |"
        )
    return "\n".join(lines) + "\n\nlatency: paced at half of each path's measured maximum (raw pass-through at 500/s)"


if __name__ == "__main__":
    main()

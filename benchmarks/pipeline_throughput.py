"""Pipeline throughput and latency on a real local broker, beside raw confluent-kafka
produce→consume on the same broker in the same run.

Latency = CreateTime of the prediction − CreateTime of its request (both stamped by producers on
this machine). Throughput = requests / (last prediction time − first request time) for a burst.

    .venv/bin/python -m benchmarks.pipeline_throughput [--burst 5000] [--paced 2000 --rate 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer

from fedrift import datasets
from fedrift.config import Settings
from fedrift.kafka_io import RecordProducer, create_topics
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.topics import PREDICTIONS, REQUESTS, ResolvedTopic, TopicCatalog
from infra.local_kafka import LocalKafka
from schemas import codec


def _consume(bootstrap: str, topics: list[str], n: int, timeout: float = 300.0) -> list:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    c.subscribe(topics)
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += [m for m in c.consume(1000, 0.2) if m.error() is None]
    c.close()
    return got


def raw_baseline(bootstrap: str, n: int) -> dict:
    """Raw confluent-kafka: the same encoded requests produced to one topic and consumed by a
    consumer that is already assigned (so group set-up is not counted), then a paced run for latency."""
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [ResolvedTopic(topic, "InferenceRequest", 3, 1, "delete", None)])
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "log_level": 3}
    )
    c.subscribe([topic])
    while not c.assignment():
        c.poll(0.1)
    producer = RecordProducer(bootstrap)
    rows = list(datasets.synthetic("shift", n, 1))
    t0 = time.time()
    for i, (x, y) in enumerate(rows):
        producer.send(
            topic, "InferenceRequest", {"id": f"r{i}", "event_time": 0, "features": x, "label": y}, key=f"r{i}"
        )
    producer.flush()
    got = 0
    while got < n:
        got += sum(1 for m in c.consume(1000, 0.2) if m.error() is None)
    t1 = time.time()
    c.close()
    latencies = _latencies_raw(bootstrap, topic, n)
    return {
        "events_per_s": n / (t1 - t0),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def _latencies_raw(bootstrap: str, topic: str, n: int) -> np.ndarray:
    """Latency of a paced raw run: produce at 200/s, consume concurrently, consume time − CreateTime."""
    import threading

    out: list[float] = []
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "latest", "log_level": 3}
    )
    c.subscribe([topic])
    while not c.assignment():
        c.poll(0.1)
    done = threading.Event()

    def reader():
        while len(out) < min(n, 2000):
            for m in c.consume(100, 0.1):
                if m.error() is None:
                    out.append(time.time() * 1000 - m.timestamp()[1])
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    p = RecordProducer(bootstrap, {"linger.ms": 0})
    for i, (x, y) in enumerate(datasets.synthetic("shift", min(n, 2000), 2)):
        p.send(topic, "InferenceRequest", {"id": f"p{i}", "event_time": 0, "features": x, "label": y}, key=f"p{i}")
        time.sleep(1 / 200)
    p.flush()
    done.wait(60)
    c.close()
    return np.array(out)


def pipeline_run(settings: Settings, burst: int, paced: int, rate: float, log_dir: Path) -> dict:
    catalog = TopicCatalog.from_settings(settings)
    create_topics(settings.bootstrap, catalog.specs())
    with Pipeline(settings, log_dir) as pipeline:
        pipeline.wait_ready()
        producer = RecordProducer(settings.bootstrap, {"linger.ms": 0})
        produce(producer, catalog, request_events(datasets.synthetic("shift", paced, 5), run_id="paced"), rate=rate)
        t0 = time.time()
        produce(producer, catalog, request_events(datasets.synthetic("shift", burst, 6), run_id="burst"))
        msgs = _consume(settings.bootstrap, [catalog.name(REQUESTS), catalog.name(PREDICTIONS)], 2 * (paced + burst))
    req_ts, pred_ts = {}, {}
    for m in msgs:
        if m.topic() == catalog.name(REQUESTS):
            req_ts[m.key().decode()] = m.timestamp()[1]
        else:
            pred_ts[codec().decode(m.value())[1]["request_id"]] = m.timestamp()[1]
    paced_lat = np.array([pred_ts[k] - req_ts[k] for k in pred_ts if k.startswith("paced")])
    burst_end = max(v for k, v in pred_ts.items() if k.startswith("burst")) / 1000
    return {
        "events_per_s": burst / (burst_end - t0),
        "p50_ms": float(np.percentile(paced_lat, 50)),
        "p99_ms": float(np.percentile(paced_lat, 99)),
        "predicted": len(pred_ts),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--burst", type=int, default=5000)
    ap.add_argument("--paced", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--models", default="linear,gnb")
    ap.add_argument("--replicas", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="fedrift-bench-"))
    kafka = LocalKafka(Path(__file__).resolve().parents[1] / ".fedrift" / "bench", base_port=39092)
    kafka.start()
    try:
        raw = raw_baseline(kafka.bootstrap, args.burst)
        settings = dataclasses.replace(
            Settings(),
            bootstrap_servers=kafka.bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:4]}.",
            models=tuple(args.models.split(",")),
            replicas=args.replicas,
            home=home,
            n_features=5,
        )
        pipe = pipeline_run(settings, args.burst, args.paced, args.rate, home / "logs")
    finally:
        kafka.stop()
    print(f"| path | events/s (burst of {args.burst}) | p50 latency ms (paced {args.rate:g}/s) | p99 latency ms |")
    print("|---|---|---|---|")
    print(
        f"| raw confluent-kafka produce→consume | {raw['events_per_s']:.0f} | {raw['p50_ms']:.1f} "
        f"| {raw['p99_ms']:.1f} |"
    )
    print(
        f"| fedrift pipeline ({args.models} × {args.replicas} replicas) | {pipe['events_per_s']:.0f} | "
        f"{pipe['p50_ms']:.1f} | {pipe['p99_ms']:.1f} |"
    )
    print(
        f"\npipeline / raw throughput: {pipe['events_per_s'] / raw['events_per_s']:.3f}; "
        f"p50 latency ratio {pipe['p50_ms'] / max(raw['p50_ms'], 1e-9):.1f}x; predictions {pipe['predicted']}"
    )


if __name__ == "__main__":
    main()

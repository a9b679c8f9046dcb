"""The ``fedrift`` command line. Bad arguments and unreachable brokers get one clear line."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import Counter

from fedrift.config import Settings

log = logging.getLogger("fedrift")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def ensure_broker(settings: Settings, nodes: int = 1) -> str:
    """Return the bootstrap servers, starting the local broker when none is configured."""
    from fedrift.kafka_io import check_broker

    if settings.local:
        from infra.local_kafka import LocalKafka

        kafka = LocalKafka(settings.home, nodes=nodes, base_port=settings.kafka_port if nodes == 1 else None)
        state = kafka.start()
        print(f"local Kafka ({nodes} node{'s' if nodes > 1 else ''}) {state} at {kafka.bootstrap}", file=sys.stderr)
        return kafka.bootstrap
    check_broker(settings.bootstrap)
    return settings.bootstrap


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from infra.local_kafka import LocalKafka

    base = settings.kafka_port if args.nodes == 1 else None
    kafka = LocalKafka(settings.home, nodes=args.nodes, base_port=base)
    if args.action == "start":
        t0 = time.monotonic()
        state = kafka.start(timeout=args.timeout)
        print(f"{state}: {kafka.bootstrap} ({time.monotonic() - t0:.1f}s)")
    elif args.action == "stop":
        print(kafka.stop(timeout=args.timeout))
    else:
        status = kafka.status()
        print(json.dumps(status, indent=2))
        return 0 if status["ready"] else 1
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from fedrift.kafka_io import create_topics
    from fedrift.topics import TopicCatalog

    bootstrap = ensure_broker(settings)
    result = create_topics(bootstrap, TopicCatalog.from_settings(settings).specs())
    for name, state in sorted(result.items()):
        print(f"{state:8} {name}")
    return 0


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    if settings.local:
        ensure_broker(settings)
    run_worker(settings, args.processors.split(","))
    return 0


def _rows(args: argparse.Namespace):
    from fedrift import datasets

    if args.data:
        _, rows = datasets.read_csv(args.data, args.label_column)
        if args.n:
            from itertools import islice

            rows = islice(rows, args.n)
        return rows
    if args.stream:
        return datasets.synthetic(args.stream, args.n or 10_000, args.seed)
    raise UsageError("give --data FILE.csv or --stream NAME")


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from fedrift.kafka_io import RecordProducer, create_topics
    from fedrift.produce import produce, request_events
    from fedrift.topics import TopicCatalog

    rows = _rows(args)
    bootstrap = ensure_broker(settings)
    catalog = TopicCatalog.from_settings(settings)
    create_topics(bootstrap, catalog.specs())
    with tqdm(desc="requests", unit="ev", total=args.n or None, disable=args.quiet) as bar:
        n = produce(
            RecordProducer(bootstrap),
            catalog,
            request_events(rows, label_delay=args.label_delay),
            rate=args.rate,
            progress=bar,
        )
    print(f"produced {n} requests to {catalog.name('inference.requests')}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the broker and the stream processors, produce a short drifting stream, show what arrives."""
    from confluent_kafka import Consumer

    from fedrift import datasets
    from fedrift.kafka_io import RecordProducer, create_topics
    from fedrift.produce import produce, request_events
    from fedrift.topics import REQUESTS, TopicCatalog
    from schemas import codec

    bootstrap = ensure_broker(settings)
    catalog = TopicCatalog.from_settings(settings)
    create_topics(bootstrap, catalog.specs())
    log_path = settings.home / "logs" / "streams.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "fedrift.cli", "streams", "--processors", "router"],
        env={**_env_of(settings), "FEDRIFT_BOOTSTRAP_SERVERS": bootstrap},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        run_id = f"run{int(time.time())}"
        rows = datasets.synthetic(args.stream, args.n, args.seed)
        n = produce(RecordProducer(bootstrap), catalog, request_events(rows, run_id=run_id))
        print(f"produced {n} requests ({args.stream}, abrupt drift every {args.n // 4}) to {catalog.name(REQUESTS)}")
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"fedrift-run-{run_id}",
                "auto.offset.reset": "earliest",
                "log_level": 3,
            }
        )
        consumer.subscribe([catalog.routed(m) for m in settings.models])
        per_model: Counter[str] = Counter()
        deadline = time.monotonic() + args.timeout
        while sum(per_model.values()) < n and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise UsageError(f"the stream processors exited ({worker.returncode}); see {log_path}")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            _, routed = codec().decode(msg.value(), expect="RoutedRequest")
            if routed["request"]["id"].startswith(run_id):
                per_model[routed["model"]] += 1
                if sum(per_model.values()) % max(n // 10, 1) == 0:
                    print(f"  arrived {sum(per_model.values()):>6}/{n}  by model: {dict(sorted(per_model.items()))}")
        consumer.close()
        print(f"arrived {sum(per_model.values())} of {n} routed requests: {dict(sorted(per_model.items()))}")
        return 0 if sum(per_model.values()) == n else 1
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """The whole control loop in one process (no Kafka); deterministic for a seed."""
    from tqdm import tqdm

    from fedrift import datasets
    from fedrift.simulate import SimConfig, format_table, timed_run, to_json

    if args.data:
        names, rows = datasets.read_csv(args.data, args.label_column)
        with open(args.data) as fh:
            total = sum(1 for _ in fh) - 1
    elif args.stream:
        names, rows, total = None, datasets.synthetic(args.stream, args.n, args.seed), args.n
    else:
        raise UsageError("give --data FILE.csv or --stream NAME")
    if args.replicas < 1:
        raise UsageError("--replicas must be at least 1")
    config = SimConfig(replicas=args.replicas, seed=args.seed, epsilon_budget=settings.epsilon_budget)
    with tqdm(total=total, unit="ev", desc="simulate", disable=args.json, file=sys.stderr) as bar:
        sim, elapsed = timed_run(rows, config, names, progress=bar)
    result = sim.result()
    print(to_json(result) if args.json else format_table(result, elapsed))
    return 0


def _env_of(settings: Settings) -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FEDRIFT_")} | {
        "FEDRIFT_HOME": str(settings.home),
        "FEDRIFT_TOPIC_PREFIX": settings.topic_prefix,
        "FEDRIFT_MODELS": ",".join(settings.models),
        "FEDRIFT_PARTITIONS": str(settings.partitions),
        "FEDRIFT_REPLICATION_FACTOR": str(settings.replication_factor),
        "FEDRIFT_N_FEATURES": str(settings.n_features),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedrift", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="run a local Apache Kafka (KRaft) from Maven Central jars")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    k.add_argument("--timeout", type=float, default=90.0)
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="topic catalog")
    t.add_argument("action", choices=["create"])
    t.set_defaults(func=cmd_topics)

    s = sub.add_parser("streams", help="run Faust stream processors in one worker")
    s.add_argument("--processors", default="router")
    s.set_defaults(func=cmd_streams)

    pr = sub.add_parser("produce", help="produce a CSV or a River drifting stream into inference.requests")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="CSV file, header row, last column the label")
    src.add_argument("--stream", help="River synthetic stream: sea, agrawal, stagger, hyperplane, rbf, led")
    pr.add_argument("--label-column")
    pr.add_argument("--n", type=int, default=0, help="number of events (default: whole CSV, 10000 synthetic)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--rate", type=float, default=0.0, help="requests per second (0 = as fast as possible)")
    pr.add_argument("--label-delay", type=int, default=0, help="send labels N requests later as Feedback")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_produce)

    sm = sub.add_parser("simulate", help="the whole control loop in one process, against the baselines")
    smsrc = sm.add_mutually_exclusive_group(required=True)
    smsrc.add_argument("--data", help="CSV file, header row, last column the label")
    smsrc.add_argument("--stream", help="River synthetic stream: sea, agrawal, stagger, hyperplane, rbf, led")
    sm.add_argument("--label-column")
    sm.add_argument("--n", type=int, default=20_000, help="events of a synthetic stream")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--replicas", type=int, default=3)
    sm.add_argument("--json", action="store_true", help="print one JSON object")
    sm.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="the main job: broker, topics, processors, a drifting stream through them")
    r.add_argument("--stream", default="sea")
    r.add_argument("--n", type=int, default=4000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=120.0)
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    from fedrift.datasets import DataError
    from fedrift.kafka_io import BrokerUnavailable, DeliveryFailed
    from infra.local_kafka import KafkaError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (UsageError, ValueError, DataError, BrokerUnavailable, DeliveryFailed, KafkaError) as exc:
        print(f"fedrift {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``fedrift`` command line. Bad arguments and unreachable brokers get one clear line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from fedrift.config import Settings

log = logging.getLogger("fedrift")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def ensure_broker(settings: Settings, role: str = "admin") -> Settings:
    """The settings of a reachable broker: the configured one (checked by connecting as
    ``role``), or the local one, started when it is not running, secure unless
    ``FEDRIFT_SECURITY_PROTOCOL=PLAINTEXT``."""
    from fedrift.connection import connect, for_cluster
    from fedrift.kafka_io import check_broker

    if settings.local:
        from infra.local_kafka import LocalKafka

        secure = _secure(settings)
        nodes = 3 if LocalKafka(settings.home, nodes=3, secure=secure).running() else 1  # one the user started
        kafka = LocalKafka(settings.home, nodes=nodes, base_port=settings.kafka_port if nodes == 1 else None,
                           secure=secure)
        state = kafka.start()
        how = "SASL_SSL, SCRAM-SHA-512, ACLs" if secure else "PLAINTEXT"
        print(f"local Kafka ({nodes} node{'s' if nodes > 1 else ''}, {how}) {state} at {kafka.bootstrap}",
              file=sys.stderr)
        return for_cluster(settings, kafka)
    check_broker(connect(settings, role))
    return settings


def _secure(settings: Settings) -> bool:
    from fedrift.connection import checked_protocol

    return checked_protocol(settings) != "PLAINTEXT"


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from infra.local_kafka import LocalKafka

    if args.action == "configure":
        from infra.container import write_container_broker

        for path in write_container_broker(Path(args.dir), host=args.host):
            print(f"wrote {path}")
        return 0
    base = settings.kafka_port if args.nodes == 1 else None
    secure = _secure(settings) if args.secure is None else args.secure
    kafka = LocalKafka(settings.home, nodes=args.nodes, base_port=base, secure=secure)
    if args.action == "start":
        t0 = time.monotonic()
        state = kafka.start(timeout=args.timeout)
        how = f"SASL_SSL, credentials in {kafka.security.directory}" if kafka.security else "PLAINTEXT"
        print(f"{state}: {kafka.bootstrap} ({how}; {time.monotonic() - t0:.1f}s)")
    elif args.action == "stop":
        print(kafka.stop(timeout=args.timeout))
    else:
        status = kafka.status()
        print(json.dumps(status, indent=2))
        return 0 if status["ready"] else 1
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from fedrift.provision import provision

    settings = ensure_broker(settings)
    catalog = provision(settings, bundles=args.bundles)
    print(f"{len(catalog.specs())} topics under prefix {settings.topic_prefix!r} on {settings.bootstrap}"
          + (f"; role users and ACLs in force ({settings.credentials_dir})" if settings.credentials_dir else ""))
    return 0


def cmd_roster(args: argparse.Namespace, settings: Settings) -> int:
    """Write the roster of the hosts whose identities live in FEDRIFT_IDENTITY_DIR (created if new)."""
    from fedrift.roster import write_roster

    hosts = [h for h in args.hosts.split(",") if h] if args.hosts else None
    path = write_roster(settings, Path(args.out), hosts, split=args.split)
    print(f"roster of {len(json.loads(path.read_text()))} host(s) written to {path}; "
          f"hand it to every host and the aggregator as FEDRIFT_HOST_ROSTER")
    return 0


def cmd_acls(args: argparse.Namespace, settings: Settings) -> int:
    """Print what each role may do (the ACLs ``fedrift topics create`` applies)."""
    from fedrift import access
    from fedrift.connection import principal
    from fedrift.topics import TopicCatalog

    access.check_names(settings.topic_prefix, settings.models)
    catalog = TopicCatalog.from_settings(settings)
    print("User:admin (role admin): super user (creates topics, users and ACLs; the monitor and checks read as it)")
    for role in access.roles(catalog):
        print(f"User:{principal(settings, role)} (role {role}):")
        for g in access.grants(role, catalog, settings.replicas):
            print(f"  {','.join(g.operations):28} {g.resource} {g.name}{'*' if g.pattern == 'prefixed' else ''}")
    return 0


def cmd_host(args: argparse.Namespace, settings: Settings) -> int:
    from agents.host import ModelHost

    logging.getLogger().setLevel(settings.log_level.upper())
    ModelHost(settings, args.model, args.replica).run(ready_file=args.ready_file)
    return 0


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    if settings.local:
        settings = ensure_broker(settings)
    run_worker(settings, args.processors.split(","), ready_file=args.ready_file)
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

    from fedrift.access import CLIENT
    from fedrift.connection import MissingCredentials, connect
    from fedrift.kafka_io import RecordProducer
    from fedrift.produce import clock_for, produce, request_events
    from fedrift.provision import provision
    from fedrift.topics import TopicCatalog

    rows = _rows(args)
    settings = ensure_broker(settings, CLIENT)
    try:
        catalog = provision(settings)  # where this process holds the admin's credentials
    except MissingCredentials:
        catalog = TopicCatalog.from_settings(settings)  # a client: the topics are the operator's
    with tqdm(desc="requests", unit="ev", total=args.n or None, disable=args.quiet) as bar:
        n = produce(
            RecordProducer(connect(settings, CLIENT)),
            catalog,
            request_events(rows, label_delay=args.label_delay, clock=clock_for(args.rate)),
            rate=args.rate,
            progress=bar,
        )
    print(f"produced {n} requests to {catalog.name('inference.requests')}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The main job: broker, topics, every processor and host, a drifting stream, live progress."""
    from fedrift import datasets
    from fedrift.run import run

    if args.data:
        from itertools import islice

        _, rows = datasets.read_csv(args.data, args.label_column)
        rows = islice(rows, args.n) if args.n else rows
    else:
        rows = datasets.synthetic(args.stream, args.n, args.seed)
    return run(rows, ensure_broker(settings), args.rate, args.label_delay, args.timeout)


def cmd_routes(args: argparse.Namespace, settings: Settings) -> int:
    """Follow routing.weights and print each change."""
    from fedrift.access import CLIENT
    from fedrift.client import RoutingClient
    from fedrift.connection import connect
    from fedrift.topics import TopicCatalog

    settings = ensure_broker(settings, CLIENT)
    client = RoutingClient(connect(settings, CLIENT), TopicCatalog.from_settings(settings), settings.models)
    shown = 0
    try:
        while args.max_changes == 0 or shown < args.max_changes:
            change = client.wait_for_change(timeout=args.timeout or None)
            if change is None:
                break
            shown += 1
            w = " ".join(f"{m}={v:.3f}" for m, v in sorted(change["weights"].items()))
            pruned = "; ".join(f"{p['model']}: {p['reason']}" for p in change["pruned"])
            print(f"v{change['version']} {w}" + (f" | pruned {pruned}" if pruned else ""), flush=True)
    finally:
        client.close()
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from fedrift import replay
    from fedrift.connection import connect

    settings = ensure_broker(settings)
    admin = connect(settings, "admin")
    if args.action == "export":
        n = replay.export(admin, args.topic, Path(args.file), args.from_time, args.to_time)
        print(f"exported {n} records from {args.topic} to {args.file}")
    else:
        if not Path(args.file).is_file():
            raise UsageError(f"no such replay file: {args.file}")
        n = replay.play(admin, Path(args.file), args.topic, pace=args.pace, speed=args.speed)
        print(f"played {n} records from {args.file} into {args.topic} ({args.pace})")
    return 0


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
    finite = datasets.finite_rows(rows, args.data or args.stream)
    data = list(finite) if args.zoo else finite  # the zoo reads the rows again, once per member
    delays = {k: getattr(args, k) for k in ("hpo_latency_s", "control_delay_s") if getattr(args, k) is not None}
    if any(v < 0 for v in delays.values()):
        raise UsageError("--hpo-latency-s and --control-delay-s must not be negative")
    config = SimConfig.from_settings(settings, replicas=args.replicas, seed=args.seed, **delays)
    with tqdm(total=total, unit="ev", desc="simulate", disable=args.json, file=sys.stderr) as bar:
        sim, elapsed = timed_run(data, config, names, progress=bar)
    result = sim.result()
    if args.zoo:
        from fedrift.zoo import ZOO, prequential

        for name in tqdm(ZOO, unit="model", desc="zoo", disable=args.json, file=sys.stderr):
            z = prequential(name, data)
            result["systems"][f"zoo:{name}"] = {"accuracy": z.accuracy, "kappa_temporal": None,
                                                "events_per_s": z.events_per_s}
    print(to_json(result) if args.json else format_table(result, elapsed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedrift", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _service_commands(sub)
    _data_commands(sub)
    return p


def _service_commands(sub) -> None:
    """The broker and the long-running pipeline processes, and the tools that read topics."""
    k = sub.add_parser("kafka", help="run a local Apache Kafka (KRaft) from Maven Central jars")
    k.add_argument("action", choices=["start", "stop", "status", "configure"],
                   help="configure: write a secure broker's certificates, credentials and settings for a container")
    k.add_argument("--dir", default="/security", help="configure: where to write them")
    k.add_argument("--host", default="kafka", help="configure: the broker's host name on the network")
    k.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    k.add_argument("--timeout", type=float, default=90.0)
    mode = k.add_mutually_exclusive_group()
    mode.add_argument("--secure", dest="secure", action="store_true", default=None,
                      help="TLS, SASL/SCRAM-SHA-512 and ACLs (the default unless FEDRIFT_SECURITY_PROTOCOL=PLAINTEXT)")
    mode.add_argument("--plaintext", dest="secure", action="store_false", help="no TLS, no login (debugging)")
    k.set_defaults(func=cmd_kafka)

    t = sub.add_parser("topics", help="topic catalog")
    t.add_argument("action", choices=["create"])
    t.add_argument("--bundles", action="store_true",
                   help="also write <credentials dir>/bundles/<user>/: each role's credentials and the CA alone")
    t.set_defaults(func=cmd_topics)

    rs = sub.add_parser("roster", help="write the public keys of the hosts (their identities in "
                                       "FEDRIFT_IDENTITY_DIR): the only ones trusted")
    rs.add_argument("--out", required=True, help="the roster file (JSON) to write")
    rs.add_argument("--hosts", help="comma list of <model>-<replica> (default: every replica of every model)")
    rs.add_argument("--split", action="store_true",
                    help="each host's identity in a directory of its own, <identity dir>/<model>-<replica>/")
    rs.set_defaults(func=cmd_roster)

    a = sub.add_parser("acls", help="print what each role's principal may do on the cluster")
    a.set_defaults(func=cmd_acls)

    s = sub.add_parser("streams", help="run Faust stream processors in one worker")
    s.add_argument(
        "--processors", default="all", help="all, or a comma list of drift,aggregator,controller,shadow"
    )
    s.add_argument("--ready-file", help="touch this file once the worker has started")
    s.set_defaults(func=cmd_streams)

    h = sub.add_parser("host", help="run one model host (a replica of a model with its FHPO agent)")
    h.add_argument("--model", required=True)
    h.add_argument("--replica", type=int, default=0)
    h.add_argument("--ready-file", help="touch this file once serving (a readiness signal for supervisors)")
    h.set_defaults(func=cmd_host)

    ro = sub.add_parser("routes", help="follow routing.weights and print each change")
    ro.add_argument("--max-changes", type=int, default=0, help="stop after N changes (0 = follow forever)")
    ro.add_argument("--timeout", type=float, default=0, help="stop after this many idle seconds (0 = never)")
    ro.set_defaults(func=cmd_routes)

    rp = sub.add_parser("replay", help="topic range <-> Avro container file (keys, timestamps, headers kept)")
    rp.add_argument("action", choices=["export", "play"])
    rp.add_argument("--topic", required=True, help="full topic name (prefix included)")
    rp.add_argument("--file", required=True, help="the .avro file to write (export) or read (play)")
    rp.add_argument("--from-time", type=int, help="export: first timestamp (ms)")
    rp.add_argument("--to-time", type=int, help="export: last timestamp (ms)")
    rp.add_argument("--pace", choices=["fast", "recorded"], default="fast")
    rp.add_argument("--speed", type=float, default=1.0, help="play: speed-up of the recorded pace")
    rp.set_defaults(func=cmd_replay)


def _source(parser, n: int, n_help: str, stream_default: str | None = None) -> None:
    """The stream a data command reads: a CSV file or a River synthetic stream."""
    src = parser.add_mutually_exclusive_group(required=stream_default is None)
    src.add_argument("--data", help="CSV file, header row, last column the label")
    stream_help = "River synthetic stream: shift, sea, agrawal, stagger, hyperplane, rbf, led"
    src.add_argument("--stream", default=stream_default, help=stream_help)
    parser.add_argument("--label-column")
    parser.add_argument("--n", type=int, default=n, help=n_help)
    parser.add_argument("--seed", type=int, default=0)


def _data_commands(sub) -> None:
    """Commands that put a stream through the pipeline (or the simulator)."""
    pr = sub.add_parser("produce", help="produce a CSV or a River drifting stream into inference.requests")
    _source(pr, 0, "number of events (default: whole CSV, 10000 synthetic)")
    pr.add_argument("--rate", type=float, default=0.0, help="requests per second (0 = as fast as possible)")
    pr.add_argument("--label-delay", type=int, default=0, help="send labels N requests later as Feedback")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_produce)

    sm = sub.add_parser("simulate", help="the whole control loop in one process, against the baselines")
    _source(sm, 20_000, "events of a synthetic stream")
    sm.add_argument("--replicas", type=int, default=Settings().replicas)
    sm.add_argument("--json", action="store_true", help="print one JSON object")
    sm.add_argument("--zoo", action="store_true", help="also score every River family alone, defaults (slow)")
    sm.add_argument("--hpo-latency-s", type=float, default=None,
                    help="seconds from an HPO trigger to its round's metrics (default 8: the hosts' optimisation time)")
    sm.add_argument("--control-delay-s", type=float, default=None,
                    help="seconds from a request to routing weights that count it (default 0: the hosts' and "
                         "the controller's lag)")
    sm.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="the main job: broker, topics, the whole pipeline, a drifting stream through it")
    _source(r, 12_000, "events of a synthetic stream (default: shift, abrupt at n/2)", stream_default="shift")
    r.add_argument("--rate", type=float, default=250.0, help="requests per second")
    r.add_argument("--label-delay", type=int, default=0)
    r.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the last predictions")
    r.set_defaults(func=cmd_run)


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

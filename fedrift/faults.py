"""Fault injection for the chaos test and the soak benchmark: a labelled drifting stream produced
at a fixed rate while named processes of a ``Pipeline`` (and a broker of a local cluster) are
SIGKILLed at given request counts. What was acknowledged is returned, for the per-id check in
``fedrift.exactly_once``."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from fedrift import datasets
from fedrift.access import CLIENT
from fedrift.connection import Connection, connect
from fedrift.kafka_io import producer_config
from fedrift.pipeline import Pipeline
from fedrift.topics import FEEDBACK, REQUESTS, TopicCatalog
from schemas import codec

BROKER = "broker"  # a kill target: the broker that leads request partition 0


def labelled_stream(n: int, run_id: str, late_every: int = 3, delay: int = 25) -> Iterator[tuple[str, str, dict]]:
    """(topic base, record, value) of a drifting stream; every ``late_every``-th label comes late,
    on ``inference.feedback``, ``delay`` requests after its request."""
    late: list[tuple[int, dict]] = []
    for i, (x, y) in enumerate(datasets.synthetic("shift", n, seed=11)):
        rid = f"{run_id}-{i}"
        inline = i % late_every != 0
        yield REQUESTS, "InferenceRequest", {"id": rid, "event_time": i, "features": x, "label": y if inline else None}
        if not inline:
            late.append((i, {"id": rid, "label": y, "time": i}))
        while late and late[0][0] <= i - delay:
            yield FEEDBACK, "Feedback", late.pop(0)[1]
    for _, fb in late:
        yield FEEDBACK, "Feedback", fb


def produce_paced(conn: Connection, catalog: TopicCatalog, events, rate: float, progress: dict) -> None:
    """Produce at ``rate`` requests/s; ``progress["acked"]`` collects the acknowledged request ids."""
    producer = Producer(producer_config(conn))
    requests = catalog.name(REQUESTS)

    def on_delivery(err, msg) -> None:
        if err is None and msg.topic() == requests:
            progress["acked"].add(msg.key().decode())

    t0 = time.monotonic()
    for base, record, value in events:
        raw = codec().encode(record, value)
        while True:
            try:
                producer.produce(catalog.name(base), raw, value["id"], on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if base == REQUESTS:
            progress["sent"] += 1
            ahead = progress["sent"] / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(120)
    progress["done"] = True


def kill_partition_leader(cluster, topic: str, partition: int) -> int:
    """SIGKILL the node of a local cluster that leads ``topic``/``partition``; returns its id."""
    md = AdminClient({"bootstrap.servers": cluster.bootstrap, **cluster.client_config()}).list_topics(topic, timeout=10)
    leader = md.topics[topic].partitions[partition].leader
    node = next(n for n in cluster.nodes if n.node_id == leader)
    os.kill(int(node.pid_file.read_text()), signal.SIGKILL)
    return leader


def _start(cluster, failures: list[Exception]) -> None:
    try:
        cluster.start(timeout=120)
    except Exception as exc:  # raised by run_with_kills once the run is over
        failures.append(exc)


def run_with_kills(pipeline: Pipeline, cluster, catalog: TopicCatalog, n: int, rate: float, kills: dict,
                   run_id: str = "chaos", broker_down_s: float = 5.0) -> dict:
    """Produce ``n`` labelled requests at ``rate`` while killing ``kills[at]`` (a pipeline process
    name, or ``BROKER``) once ``at`` requests were sent; a killed broker is restarted after
    ``broker_down_s``. Returns ``{"acked": set of ids, "killed": [(at, victim)]}``."""
    kills = dict(kills)
    progress = {"sent": 0, "done": False, "acked": set()}
    stream = labelled_stream(n, run_id)
    client = connect(pipeline.settings, CLIENT)
    thread = threading.Thread(target=produce_paced, args=(client, catalog, stream, rate, progress), daemon=True)
    thread.start()
    killed, broker_back = [], None
    restarts: list[threading.Thread] = []
    failures: list[Exception] = []
    while not progress["done"] or any(at <= progress["sent"] for at in kills):
        for at in sorted(at for at in kills if progress["sent"] >= at):
            victim = kills.pop(at)
            if victim == BROKER:
                killed.append((at, f"broker {kill_partition_leader(cluster, catalog.name(REQUESTS), 0)}"))
                broker_back = time.monotonic() + broker_down_s
            else:
                pipeline.kill(victim)
                killed.append((at, victim))
        if broker_back and time.monotonic() > broker_back:
            # in the background: waiting for the cluster must not hold the next kills back
            restarts.append(threading.Thread(target=_start, args=(cluster, failures)))
            restarts[-1].start()
            broker_back = None
        pipeline.supervise()
        time.sleep(0.05)
    if broker_back:
        cluster.start(timeout=120)
    for thread in restarts:
        thread.join()
    if failures:
        raise failures[0]
    return {"acked": progress["acked"], "killed": killed}

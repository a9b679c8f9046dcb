"""Exactly-once per request id while fedrift processes and a Kafka broker are SIGKILLed.

On the 3-node cluster (topics with replication factor 3, min.insync.replicas 2) the whole pipeline
(Faust worker and model hosts, supervised by ``Pipeline``) serves a drifting, labelled stream (a
third of the labels late, on ``inference.feedback``). Meanwhile a host of each model (one of them
while the drift's HPO round runs), the Faust worker, and the broker that leads request partition 0
are killed with SIGKILL; the supervisor restarts the processes, the test restarts the broker. Then,
per request id: every acked request has exactly one read_committed prediction, and each model
learned each label exactly once (the hosts' learned-id digests).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from fedrift import datasets
from fedrift.config import Settings
from fedrift.kafka_io import create_topics, producer_config
from fedrift.pipeline import Pipeline
from fedrift.topics import FEEDBACK, REQUESTS, TopicCatalog
from schemas import codec
from tests.integration.chaos import verdict, wait_learned

pytestmark = pytest.mark.integration

N, RATE, LATE_EVERY, DELAY = 50_000, 700.0, 3, 25


def labelled_stream(n: int, run_id: str):
    """(topic base, record, value): every third label comes late, ``DELAY`` requests later."""
    late = []
    for i, (x, y) in enumerate(datasets.synthetic("shift", n, seed=11)):
        rid = f"{run_id}-{i}"
        inline = i % LATE_EVERY != 0
        yield REQUESTS, "InferenceRequest", {"id": rid, "event_time": i, "features": x, "label": y if inline else None}
        if not inline:
            late.append((i, {"id": rid, "label": y, "time": i}))
        while late and late[0][0] <= i - DELAY:
            yield FEEDBACK, "Feedback", late.pop(0)[1]
    for _, fb in late:
        yield FEEDBACK, "Feedback", fb


def produce_paced(bootstrap: str, catalog: TopicCatalog, events, progress: dict) -> None:
    """Produce at ``RATE``; ``progress["acked"]`` collects the request ids the cluster acknowledged."""
    producer = Producer(producer_config(bootstrap))
    requests = catalog.name(REQUESTS)

    def on_delivery(err, msg):
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
            ahead = progress["sent"] / RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(120)
    progress["done"] = True


def kill_partition_leader(cluster, topic: str, partition: int) -> int:
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    leader = md.topics[topic].partitions[partition].leader
    node = next(n for n in cluster.nodes if n.node_id == leader)
    os.kill(int(node.pid_file.read_text()), signal.SIGKILL)
    return leader


def test_sigkill_of_hosts_the_faust_worker_and_a_leader_broker_loses_and_repeats_nothing(kafka3, tmp_path):
    settings = Settings(
        bootstrap_servers=kafka3.bootstrap,
        topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
        home=tmp_path / "home",
        models=("gnb", "linear"),
        replicas=2,
        partitions=4,
        n_features=5,
        checkpoint_every_s=1.0,
    )
    catalog = TopicCatalog.from_settings(settings)
    create_topics(settings.bootstrap, catalog.specs())
    kills = {
        N // 6: "host-gnb-0",
        2 * N // 6: "streams",
        3 * N // 6 + 1500: "host-linear-1",  # the drift at N/2 triggers an HPO round: mid-round
        4 * N // 6: "broker",
        5 * N // 6: "host-gnb-0",
    }
    progress = {"sent": 0, "done": False, "acked": set()}
    restarted_broker = None
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        stream = labelled_stream(N, "chaos")
        thread = threading.Thread(target=produce_paced, args=(settings.bootstrap, catalog, stream, progress))
        thread.daemon = True
        thread.start()
        while not progress["done"]:
            for at in [at for at in kills if progress["sent"] >= at]:
                victim = kills.pop(at)
                if victim == "broker":
                    leader = kill_partition_leader(kafka3, catalog.name(REQUESTS), 0)
                    restarted_broker = time.monotonic() + 5.0
                else:
                    pipeline.kill(victim)
            if restarted_broker and time.monotonic() > restarted_broker:
                kafka3.start(timeout=120)
                restarted_broker = None
            pipeline.supervise()
            time.sleep(0.05)
        if restarted_broker:
            kafka3.start(timeout=120)
        assert not kills
        wait_learned(settings.bootstrap, catalog, settings.models, N, timeout=300, supervise=pipeline.supervise)
        restarts = pipeline.supervise()
        acked = sorted(progress["acked"])
        result = verdict(settings.bootstrap, catalog, acked, acked, settings.models, timeout=180)
    assert len(acked) == N and leader in (1, 2, 3)
    assert restarts == {"host-gnb-0": 2, "streams": 1, "host-linear-1": 1}, restarts
    assert not result.missing and not result.duplicated and not result.unexpected, (
        len(result.missing), result.duplicated[:5], result.unexpected[:5]
    )
    assert result.learned == {m: N for m in settings.models}, result.learned
    assert all(result.digest_ok.values()), result.digest_ok

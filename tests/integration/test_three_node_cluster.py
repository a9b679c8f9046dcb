"""The 3-node KRaft cluster: RF 3 topic, produce/consume round trip, and survival of one node's loss."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource

from fedrift.connection import Connection
from fedrift.kafka_io import RecordProducer, create_topics
from fedrift.topics import ResolvedTopic
from schemas import codec

pytestmark = pytest.mark.integration


def _read_all(conn: Connection, topic: str, expected: int, timeout: float = 60.0) -> list:
    consumer = Consumer(conn.conf(**{"group.id": conn.group("test"), "auto.offset.reset": "earliest", "log_level": 3}))
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    consumer.close()
    return got


def test_three_node_cluster_replicates_and_survives_a_node_loss(kafka3):
    cluster = kafka3
    conn = Connection(cluster.bootstrap, cluster.client_config())
    try:
        topic = ResolvedTopic(f"rf3-{uuid.uuid4().hex[:6]}", "Feedback", 3, 0, "delete", None)
        create_topics(conn, [topic])  # replication factor 0: the cluster's (3, min ISR 2)
        md = AdminClient(conn.conf()).list_topics(topic.name, timeout=10)
        assert len(md.brokers) == 3
        assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in md.topics[topic.name].partitions.values())
        admin = AdminClient(conn.conf())  # kept alive until the result
        [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic.name)]).values()
        assert future.result(timeout=30)["min.insync.replicas"].value == "2"

        producer = RecordProducer(conn)
        for i in range(300):
            producer.send(topic.name, "Feedback", {"id": f"f{i}", "label": i % 2, "time": i}, key=f"f{i}")
        assert producer.flush() == 300
        got = _read_all(conn, topic.name, 300)
        assert sorted(codec().decode(m.value())[1]["id"] for m in got) == sorted(f"f{i}" for i in range(300))

        # lose one node: acks=all still succeeds with min.insync.replicas=2
        victim = cluster.nodes[2]
        os.kill(int(victim.pid_file.read_text()), signal.SIGKILL)
        for i in range(300, 400):
            producer.send(topic.name, "Feedback", {"id": f"f{i}", "label": 1, "time": i}, key=f"f{i}")
        assert producer.flush(timeout=90) == 400
        first_node = Connection(f"127.0.0.1:{cluster.nodes[0].port}", cluster.client_config())
        assert len(_read_all(first_node, topic.name, 400)) == 400
    finally:
        cluster.start(timeout=120)  # the node comes back for the next test

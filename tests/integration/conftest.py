"""Integration tests run against a real Apache Kafka broker started by this test session.

The broker runs on its own port (29092) under ``.fedrift/test`` so it never disturbs a developer's
broker on 9092. If `.ci/run` already started it, the session reuses it; otherwise the session starts
it and stops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedrift.access import ADMIN, CLIENT
from fedrift.config import REPO_ROOT, Settings
from fedrift.connection import Connection, connect, for_cluster
from fedrift.pipeline import settings_env
from fedrift.provision import provision
from fedrift.topics import TopicCatalog
from infra.local_kafka import LocalKafka

TEST_HOME = REPO_ROOT / ".fedrift" / "test"
TEST_PORT = int(os.environ.get("FEDRIFT_TEST_KAFKA_PORT", "29092"))


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka]:
    """The secure test broker: TLS, SCRAM-SHA-512 and ACLs, like ``make run``'s."""
    broker = LocalKafka(TEST_HOME, nodes=1, base_port=TEST_PORT, secure=True)
    started_here = broker.start() != "already running"
    yield broker
    if started_here:
        broker.stop()


@pytest.fixture(scope="session")
def kafka3() -> Iterator[LocalKafka]:
    """A 3-node KRaft cluster of its own (ports from 29192), for the replication and chaos tests."""
    cluster = LocalKafka(TEST_HOME, nodes=3, base_port=int(os.environ.get("FEDRIFT_TEST_KAFKA3_PORT", "29192")),
                         secure=True)
    cluster.start(timeout=120)
    yield cluster
    cluster.stop()


@pytest.fixture
def settings(kafka: LocalKafka, tmp_path: Path) -> Settings:
    """Settings for one test: the test broker and a unique topic prefix, so tests never share topics."""
    return for_cluster(Settings(
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        home=tmp_path / "home",
        models=("m1", "m2", "m3"),
        partitions=3,
        n_features=3,
    ), kafka)


def admin(settings: Settings) -> Connection:
    """The admin's connection (a super user: the tests' own reads and checks)."""
    return connect(settings, ADMIN)


def client(settings: Settings) -> Connection:
    """A client's connection (produces requests and labels, as a user would)."""
    return connect(settings, CLIENT)


@contextlib.contextmanager
def host_process(
    settings: Settings, tmp_path: Path, module: str = "fedrift.cli"
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """One model host (``linear`` replica 0) in a subprocess, ready when this yields (the process
    and its log); stopped on exit, also on failure."""
    ready, log = tmp_path / "ready", tmp_path / "host.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "host", "--model", "linear", "--replica", "0", "--ready-file", str(ready)],
            env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), log.read_text()[-3000:]
        yield proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_topics(settings: Settings) -> TopicCatalog:
    """The catalog's topics, and its role users and ACLs."""
    return provision(settings)


class Worker:
    """A real ``fedrift streams`` Faust worker in a subprocess, logging to a file."""

    def __init__(self, settings: Settings, processors: str, log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedrift.cli", "streams", "--processors", processors],
            env=settings_env(settings),
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def consume(
    conn: Connection, topics: list[str], until, timeout: float = 120.0, worker: Worker | None = None, settle: float = 0
):
    """Read ``topics`` from the beginning until ``until(messages)`` is true, then keep reading for
    ``settle`` seconds more (so an extra, duplicate message would be caught); returns the messages."""
    from confluent_kafka import Consumer

    consumer = Consumer(conn.conf(**{"group.id": conn.group("test"), "auto.offset.reset": "earliest",
                                     "enable.auto.commit": False, "log_level": 3}))
    consumer.subscribe(topics)
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s with {len(messages)} message(s)")
            if worker is not None:
                worker.assert_alive()
            messages += [m for m in consumer.consume(500, 0.5) if m.error() is None]
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            messages += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return messages

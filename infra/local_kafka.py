"""A real Apache Kafka (KRaft) on 127.0.0.1, run from Kafka's own jars resolved from Maven Central.

``LocalKafka(home, nodes=1)`` runs one combined broker+controller on port 9092;
``nodes=3`` runs three combined nodes (ports 19092/19094/19096, controllers one above each) with
replication factor 3 and ``min.insync.replicas=2`` for fault tests; ``secure=True`` runs them with
TLS, SCRAM-SHA-512 and ACLs only (``infra.security``). Starting formats the KRaft
storage once, launches detached JVMs logging to files, and returns when every broker answers a
metadata request. Starting twice is a no-op; stopping sends SIGTERM and kills after a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.security import ADMIN, SecurityMaterial

KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
LIB_DIR = KAFKA_DIR / "lib"
INTERNAL_PORT_OFFSET = 1000
JAVA_OPTS = ("-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true")


class KafkaError(RuntimeError):
    """The local broker could not be resolved, formatted, started or reached."""


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def internal_port(self) -> int:
        """The brokers' own TLS listener of a secure cluster (client certificates only)."""
        return self.port + INTERNAL_PORT_OFFSET

    @property
    def pid_file(self) -> Path:
        return self.directory / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"


def resolve_jars(quiet: bool = True) -> Path:
    """Download Kafka and its log4j2 binding into ``infra/kafka/lib`` (once; later runs use the cache)."""
    if any(LIB_DIR.glob("kafka_2.13-*.jar")):
        return LIB_DIR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("Maven (mvn) is not installed; it is needed once to fetch Kafka from Maven Central")
    cmd = [mvn, "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies"]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(LIB_DIR.glob("kafka_2.13-*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise KafkaError(f"resolving Kafka from Maven Central failed:\n{tail}")
    return LIB_DIR


def new_cluster_id() -> str:
    """A KRaft cluster id, like Kafka's ``Uuid.randomUuid`` (never starting with "-", which the
    format tool would read as an option)."""
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cid


def cluster_root(home: Path, nodes: int, secure: bool) -> Path:
    """Where a local cluster keeps its data, logs and (when secure) its security material."""
    return Path(home) / (f"kafka-{nodes}node" + ("-secure" if secure else ""))


class LocalKafka:
    """Manage a local KRaft cluster of ``nodes`` combined broker/controller processes."""

    def __init__(self, home: Path, nodes: int = 1, base_port: int | None = None, secure: bool = False) -> None:
        if nodes not in (1, 3):
            raise KafkaError(f"--nodes must be 1 or 3, not {nodes}")
        self.nodes_count = nodes
        base = base_port if base_port is not None else (9092 if nodes == 1 else 19092)
        self.root = cluster_root(home, nodes, secure)
        self.nodes = [Node(i + 1, base + 2 * i, base + 2 * i + 1, self.root / f"node{i + 1}") for i in range(nodes)]
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # data, logs and settings: the owner's only
        self.security = SecurityMaterial.ensure(self.root / "security") if secure else None

    def client_config(self) -> dict[str, str]:
        """Settings every client of this cluster needs besides ``bootstrap.servers`` (the admin's)."""
        return self.security.client_config() if self.security else {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> str:
        """Start every node that is not running and wait until the cluster serves metadata."""
        if all(self._pid(n) for n in self.nodes) and self.ready(timeout=5):
            self._ensure_admin(timeout)
            return "already running"
        resolve_jars()
        java = shutil.which("java")
        if java is None:
            raise KafkaError("java is not installed (Kafka needs Java 17+)")
        cluster_id = self._cluster_id()
        for node in self.nodes:
            if self._pid(node):
                continue
            self._check_port_free(node)
            props = self._write_properties(node)
            if not (node.directory / "data" / "meta.properties").exists():
                self._format(java, node, props, cluster_id)
            self._launch(java, node, props)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if not self._pid(n)]
            if dead:
                raise KafkaError(f"node {dead[0].node_id} exited at start; see {dead[0].log_dir}/kafka.out")
            if self.ready(timeout=2):
                self._ensure_admin(timeout)
                return "started"
            time.sleep(0.5)
        raise KafkaError(f"cluster not ready after {timeout:.0f}s; see logs under {self.root}")

    def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM every node, then SIGKILL what is still alive after ``timeout`` seconds."""
        pids = {n.node_id: p for n in self.nodes if (p := self._pid(n))}
        if not pids:
            return "not running"
        for pid in pids.values():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
            time.sleep(0.2)
        killed = [p for p in pids.values() if _alive(p)]
        for pid in killed:
            _signal(pid, signal.SIGKILL)
        for node in self.nodes:
            node.pid_file.unlink(missing_ok=True)
        return "killed after timeout" if killed else "stopped"

    def running(self) -> bool:
        """Every node's process is alive (without asking the cluster anything)."""
        return all(self._pid(n) for n in self.nodes)

    def status(self) -> dict:
        running = {n.node_id: self._pid(n) for n in self.nodes}
        return {
            "bootstrap": self.bootstrap,
            "nodes": running,
            "ready": bool(all(running.values()) and self.ready(timeout=3)),
            "directory": str(self.root),
        }

    def ready(self, timeout: float = 2.0) -> bool:
        """True when the cluster answers a metadata request and every node is registered."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**self._inside(), "socket.timeout.ms": int(timeout * 1000), "log_level": 0})
        try:
            md = admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return len(md.brokers) == self.nodes_count and md.controller_id is not None

    def _inside(self) -> dict[str, str]:
        """Settings of a client that needs no SCRAM user: on a secure cluster, the brokers' own
        certificate on their internal listener; else the plaintext listener."""
        if self.security is None:
            return {"bootstrap.servers": self.bootstrap}
        return {"bootstrap.servers": ",".join(f"127.0.0.1:{n.internal_port}" for n in self.nodes),
                **self.security.broker_client_config()}

    def _ensure_admin(self, timeout: float) -> None:
        """Create (or re-set) the admin's SCRAM credential, over the internal listener, and wait
        until it logs in: no password ever goes through a command line or a settings file."""
        if self.security is None:
            return
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        scram = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        upsert = UserScramCredentialUpsertion(ADMIN, scram, self.security.admin_password.encode())
        inside = AdminClient({**self._inside(), "log_level": 0})  # kept alive until the result
        deadline = time.monotonic() + timeout
        while True:  # a node still starting can fail the request ("broker handle destroyed"): ask again
            try:
                for future in inside.alter_user_scram_credentials([upsert]).values():
                    future.result(max(1.0, deadline - time.monotonic()))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        for node in self.nodes:  # every broker must have applied the credential, not just one
            admin: dict[str, str | int | float | bool] = {
                "bootstrap.servers": f"127.0.0.1:{node.port}", **self.client_config(), "log_level": 0}
            while True:
                try:
                    AdminClient(admin).list_topics(timeout=2)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise KafkaError(f"the admin cannot log in at 127.0.0.1:{node.port}; see {self.root}") from None
                    time.sleep(0.2)

    def wipe(self) -> None:
        """Delete all data and logs (the cluster must be stopped)."""
        if any(self._pid(n) for n in self.nodes):
            raise KafkaError("stop the cluster before wiping it")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ----------------------------------------------------------------------------
    def _cluster_id(self) -> str:
        path = self.root / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        self.root.mkdir(parents=True, exist_ok=True)
        cid = new_cluster_id()
        path.write_text(cid)
        return cid

    def _write_properties(self, node: Node) -> Path:
        props = server_properties(node, self.nodes, self.security)
        node.directory.mkdir(parents=True, exist_ok=True)
        path = node.directory / "server.properties"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java_cmd(self, java: str, node: Node, main: str, *args: str) -> list[str]:
        return [
            java,
            *JAVA_OPTS,
            f"-Dkafka.logs.dir={node.log_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp",
            f"{LIB_DIR}/*",
            main,
            *args,
        ]

    def _format(self, java: str, node: Node, props: Path, cluster_id: str) -> None:
        node.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = self._java_cmd(java, node, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c",
                             str(props))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise KafkaError(f"formatting node {node.node_id} failed: {(proc.stdout + proc.stderr).strip()}")

    def _launch(self, java: str, node: Node, props: Path) -> None:
        node.log_dir.mkdir(parents=True, exist_ok=True)
        with open(node.log_dir / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                self._java_cmd(java, node, "kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node.pid_file.write_text(str(proc.pid))

    def _pid(self, node: Node) -> int | None:
        try:
            pid = int(node.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _check_port_free(self, node: Node) -> None:
        import socket

        for port in (node.port, node.controller_port, *([node.internal_port] if self.security else [])):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise KafkaError(f"port {port} is already in use by another process; set FEDRIFT_KAFKA_PORT")


def server_properties(node: Node, nodes: list[Node], security: SecurityMaterial | None, bind: str = "127.0.0.1",
                      host: str = "127.0.0.1") -> dict[str, object]:
    """One combined broker/controller's ``server.properties``: listening on ``bind``, reached by
    clients and peers as ``host``; TLS, SCRAM and ACLs when ``security`` is given."""
    rf = len(nodes)
    voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{bind}:{node.port},CONTROLLER://{bind}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "num.partitions": 1,
        "default.replication.factor": rf,
        "min.insync.replicas": 2 if rf >= 3 else 1,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": 2 if rf >= 3 else 1,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": 2 if rf >= 3 else 1,
        **(security.broker_properties(node.port, node.controller_port, node.internal_port, bind, host)
           if security else {}),
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": 60000,
        "log.cleaner.backoff.ms": 5000,
    }
    return props


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)

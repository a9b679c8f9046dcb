"""The secure broker of ``docker-compose.yml``: what its one-shot ``security`` service writes
into the shared ``/security`` volume before the ``apache/kafka`` container starts.

The same material and settings as ``fedrift kafka start`` (``infra.security``,
``infra.local_kafka.server_properties``), for a broker reached as ``kafka`` on the compose network:
its certificate (CA-signed, for that name), the admin's SCRAM credentials, ``server.properties``,
a start script that formats the KRaft storage once (creating the admin's credentials) and runs the
broker, and the admin's properties for Kafka's own tools (the health check).
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.local_kafka import Node, new_cluster_id, server_properties
from infra.security import SecurityMaterial

KAFKA_HOME = "/opt/kafka"
DATA_DIR = Path("/var/lib/kafka")


def write_container_broker(directory: Path, host: str = "kafka", port: int = 9092) -> list[Path]:
    """Write everything the broker container needs into ``directory``; returns the files written.
    Idempotent: the CA, certificates and credentials of a first run are kept."""
    material = SecurityMaterial.ensure(directory, hosts=(host, "localhost"))
    node = Node(1, port, port + 1, DATA_DIR)
    props = server_properties(node, [node], material, bind="0.0.0.0", host=host)
    files = {
        "server.properties": "".join(f"{k}={v}\n" for k, v in props.items()),
        "admin-client.properties": material.client_properties(),
        "start-kafka.sh": _start_script(directory, material),
        "cluster.id": _cluster_id(directory),
    }
    written = []
    for name, text in files.items():
        path = directory / name
        if name == "cluster.id" and path.is_file():
            continue
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if name != "start-kafka.sh" else 0o700)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        written.append(path)
    (directory / "ca.key").unlink(missing_ok=True)  # nothing is signed later: no one can mint a broker
    return written


def _start_script(directory: Path, material: SecurityMaterial) -> str:
    scram = " ".join(f"'{a}'" for a in material.scram_format_args())
    return (
        "#!/bin/bash\nset -euo pipefail\n"
        f"props={directory}/server.properties\n"
        f"{KAFKA_HOME}/bin/kafka-storage.sh format --ignore-formatted -t \"$(cat {directory}/cluster.id)\" "
        f"-c \"$props\" {scram}\n"
        f"exec {KAFKA_HOME}/bin/kafka-server-start.sh \"$props\"\n"
    )


def _cluster_id(directory: Path) -> str:
    path = directory / "cluster.id"
    return path.read_text() if path.is_file() else new_cluster_id()

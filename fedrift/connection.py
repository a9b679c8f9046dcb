"""How a fedrift process reaches Kafka: the bootstrap servers and the security settings of its role.

Every Kafka client fedrift makes (confluent-kafka here, aiokafka under Faust in ``streams/app.py``)
is built from one ``Connection``, so a secure cluster is configured once, in the settings. Each
process connects as the principal of its *role* (``fedrift.access``): its SCRAM credentials come
from ``<credentials dir>/<role>.json``, or from one user given in the settings for every role.

>>> c = Connection("127.0.0.1:9092", {"security.protocol": "PLAINTEXT"}, "client", "dev.client.")
>>> c.conf(acks="all")["bootstrap.servers"], c.group("routes")[:16]
('127.0.0.1:9092', 'dev.client.route')
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedrift.access import check_names
from fedrift.config import Settings
from infra.security import MECHANISM

if TYPE_CHECKING:
    from infra.local_kafka import LocalKafka

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class Connection:
    """One principal's way into one cluster; ``conf`` gives confluent-kafka settings."""

    bootstrap: str
    security: Mapping[str, str] = field(default_factory=dict)
    role: str = "admin"
    group_prefix: str = ""

    def conf(self, **overrides: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, **self.security, **overrides}

    def group(self, purpose: str) -> str:
        """A fresh consumer group id under this role's prefix (the only groups its ACLs allow)."""
        return f"{self.group_prefix}{purpose}-{uuid.uuid4().hex[:12]}"


class MissingCredentials(ValueError):
    """No credentials are configured for a role this process wants to connect as."""


def checked_protocol(settings: Settings) -> str:
    """The security protocol, refused with one line when Kafka (or the local broker) has no such."""
    protocol = settings.security_protocol.upper()
    allowed = ("SASL_SSL", "PLAINTEXT") if settings.local else PROTOCOLS
    if protocol not in allowed:
        where = "the local broker runs" if settings.local else "choose one of"
        raise ValueError(f"FEDRIFT_SECURITY_PROTOCOL={settings.security_protocol!r}: {where} {', '.join(allowed)}")
    return protocol


def local_broker(settings: Settings, nodes: int = 1) -> Settings:
    """``settings`` pointed at the local cluster fedrift runs (``fedrift kafka start``): its
    bootstrap servers and, when secure, its CA and credentials directory."""
    from infra.local_kafka import LocalKafka

    secure = checked_protocol(settings) != "PLAINTEXT"
    base_port = settings.kafka_port if nodes == 1 else None
    return for_cluster(settings, LocalKafka(settings.home, nodes=nodes, base_port=base_port, secure=secure))


def for_cluster(settings: Settings, kafka: LocalKafka) -> Settings:
    """``settings`` pointed at a local cluster object (its security material, if any)."""
    resolved = replace(settings, bootstrap_servers=kafka.bootstrap)
    if kafka.security is None:
        return replace(resolved, security_protocol="PLAINTEXT")
    return replace(resolved, security_protocol="SASL_SSL", sasl_mechanism=MECHANISM,
                   credentials_dir=str(kafka.security.directory), ssl_ca_file=str(kafka.security.ca.cert))


def connect(settings: Settings, role: str) -> Connection:
    """The connection of ``role`` (e.g. ``host-linear``, ``controller``, ``client``, ``admin``)."""
    protocol = checked_protocol(settings)
    check_names(settings.topic_prefix, settings.models)
    if settings.local:
        settings = local_broker(settings)
        protocol = settings.security_protocol
    security = {"security.protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        for key, path in (("ssl.ca.location", settings.ssl_ca_file), ("ssl.certificate.location",
                          settings.ssl_cert_file), ("ssl.key.location", settings.ssl_key_file)):
            if path:
                security[key] = str(_readable(path, key))
    if protocol.startswith("SASL"):
        username, password = credentials(settings, role)
        security.update({"sasl.mechanisms": settings.sasl_mechanism, "sasl.username": username,
                         "sasl.password": password})
    return Connection(settings.bootstrap, security, role, f"{settings.topic_prefix}{role}.")


def principal(settings: Settings, role: str) -> str:
    """The user name of ``role`` in this deployment: the role under the topic prefix, so two
    deployments on one cluster never share a principal (the admin is the cluster's own).

    >>> principal(Settings(topic_prefix="prod."), "client"), principal(Settings(), "admin")
    ('prod.client', 'admin')
    """
    return role if role == "admin" else f"{settings.topic_prefix}{role}"


def credentials_file(settings: Settings, role: str) -> Path:
    return Path(settings.credentials_dir) / f"{principal(settings, role)}.json"


def credentials(settings: Settings, role: str) -> tuple[str, str]:
    """``(username, password)`` of ``role``: its file in the credentials directory, else the one
    user the settings name for every role."""
    if settings.credentials_dir:
        path = credentials_file(settings, role)
        if path.is_file():
            return _read_credentials(path)
    if settings.sasl_username:
        if not settings.sasl_password_file:
            raise ValueError("FEDRIFT_SASL_USERNAME is set but FEDRIFT_SASL_PASSWORD_FILE is not")
        return settings.sasl_username, _readable(settings.sasl_password_file, "password").read_text().strip()
    where = credentials_file(settings, role) if settings.credentials_dir else "FEDRIFT_CREDENTIALS_DIR"
    raise MissingCredentials(f"no credentials for role {role!r}: {where} is missing and FEDRIFT_SASL_USERNAME is unset "
                     "(create them with `fedrift topics create`, or set FEDRIFT_SECURITY_PROTOCOL=PLAINTEXT)")


def _read_credentials(path: Path) -> tuple[str, str]:
    try:
        creds = json.loads(path.read_text())
        username, password = creds["username"], creds["password"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a credentials file with a username and a password ({exc!r})") from None
    if not (isinstance(username, str) and isinstance(password, str) and username and password):
        raise ValueError(f"{path}: username and password must be non-empty strings")
    return username, password


def _readable(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what}: no such file {path}")
    return p

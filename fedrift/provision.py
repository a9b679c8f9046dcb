"""Set a cluster up for a deployment: the catalog's topics and, on a secure cluster, one SCRAM
user per role with exactly its ACLs (``fedrift.access``). Idempotent; run by ``fedrift topics
create``, ``fedrift run`` and the tests before anything else touches the topics.

Role credentials live in the credentials directory (``<role>.json``, 0600; beside each, the
role's client settings as ``<role>.properties``): the local secure broker's security directory
by default. A role without a file gets a fresh random password;
every role's SCRAM credential is (re)written from its file, so the files and the cluster agree.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from fedrift import access
from fedrift.config import Settings
from fedrift.connection import Connection, connect, credentials
from fedrift.kafka_io import create_topics
from fedrift.topics import TopicCatalog

log = logging.getLogger(__name__)
SCRAM_ITERATIONS = 8192
_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
              "transactional_id": ResourceType.TRANSACTIONAL_ID}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


def provision(settings: Settings) -> TopicCatalog:
    """Create the topics of ``settings``' catalog, and on a SASL cluster its roles' users and ACLs."""
    catalog = TopicCatalog.from_settings(settings)
    admin = connect(settings, access.ADMIN)
    create_topics(admin, catalog.specs())
    if admin.security.get("security.protocol", "").startswith("SASL") and settings.credentials_dir:
        roles = access.roles(catalog)
        ensure_users(admin, Path(settings.credentials_dir), roles, settings.sasl_mechanism)
        apply_acls(admin, {credentials(settings, r)[0]: access.grants(r, catalog, settings.replicas) for r in roles})
        for role in roles:
            write_client_config(Path(settings.credentials_dir) / f"{role}.properties", connect(settings, role))
    return catalog


def write_client_config(path: Path, conn: Connection) -> None:
    """A role's client settings as a librdkafka properties file (``kcat -F``, or any
    confluent-kafka client), 0600: what a user's own producer or consumer needs to connect."""
    text = "".join(f"{k}={v}\n" for k, v in conn.conf().items())
    if not path.is_file() or path.read_text() != text:
        path.unlink(missing_ok=True)
        _write_private(path, text)


def ensure_users(admin: Connection, directory: Path, roles: list[str], mechanism: str) -> None:
    """A SCRAM credential on the cluster for every role, from (or into) its file in ``directory``."""
    upserts: list[UserScramCredentialAlteration] = []
    scram = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], SCRAM_ITERATIONS)
    for role in roles:
        path = directory / f"{role}.json"
        if not path.is_file():
            _write_private(path, json.dumps({"username": role, "password": secrets.token_urlsafe(24)}))
        creds = json.loads(path.read_text())
        upserts.append(UserScramCredentialUpsertion(creds["username"], scram, creds["password"].encode()))
    client = AdminClient(admin.conf(log_level=0))
    for future in client.alter_user_scram_credentials(upserts).values():
        future.result(30)


def apply_acls(admin: Connection, by_user: dict[str, list[access.Grant]]) -> int:
    """Create the ACLs allowing each user its grants (creating an existing ACL changes nothing)."""
    bindings = [
        AclBinding(_RESOURCES[g.resource], g.name, _PATTERNS[g.pattern], f"User:{user}", "*",
                   AclOperation[op.upper()], AclPermissionType.ALLOW)
        for user, grants in by_user.items() for g in grants for op in g.operations
    ]
    client = AdminClient(admin.conf(log_level=0))
    for future in client.create_acls(bindings, request_timeout=30).values():
        future.result()
    log.info("%d ACLs in force for %s", len(bindings), ", ".join(sorted(by_user)))
    return len(bindings)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)

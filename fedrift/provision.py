"""Set a cluster up for a deployment: the catalog's topics and, on a secure cluster, one SCRAM
user per role with exactly its ACLs (``fedrift.access``). Idempotent; run by ``fedrift topics
create``, ``fedrift run`` and the tests before anything else touches the topics.

Each role of a deployment is its own user, ``<topic prefix><role>``, so deployments sharing a
cluster share no principal. Its credentials live in the credentials directory
(``<user>.json``, 0600; beside it the client settings ``<user>.properties``): the local secure
broker's security directory by default. A role without a file gets a fresh random password;
every role's SCRAM credential is (re)written from its file, so the files and the cluster agree.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from fedrift import access
from fedrift.config import Settings
from fedrift.connection import Connection, connect, credentials, credentials_file, principal
from fedrift.kafka_io import create_topics
from fedrift.topics import TopicCatalog

log = logging.getLogger(__name__)
SCRAM_ITERATIONS = 8192
_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
              "transactional_id": ResourceType.TRANSACTIONAL_ID}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


def provision(settings: Settings, bundles: bool = False) -> TopicCatalog:
    """Create the topics of ``settings``' catalog, and on a SASL cluster its roles' users and
    ACLs; with ``bundles``, also a directory per role holding only what that role's processes
    need (``write_bundle``)."""
    catalog = TopicCatalog.from_settings(settings)
    admin = connect(settings, access.ADMIN)
    create_topics(admin, catalog.specs())
    if admin.security.get("security.protocol", "").startswith("SASL") and settings.credentials_dir:
        roles = access.roles(catalog)
        ensure_users(admin, settings, roles)
        apply_acls(admin, settings.topic_prefix,
                   {credentials(settings, r)[0]: access.grants(r, catalog, settings.replicas) for r in roles})
        for role in roles:
            path = credentials_file(settings, role).with_suffix(".properties")
            write_client_config(path, connect(settings, role))
            if bundles:
                write_bundle(settings, role)
    return catalog


def write_bundle(settings: Settings, role: str) -> Path:
    """``<credentials dir>/bundles/<user>/``: the role's credentials file and the CA certificate
    only, for a service that is given that directory (compose mounts it as its own) and nothing
    of the other roles' secrets."""
    source = credentials_file(settings, role)
    bundle = source.parent / "bundles" / source.stem
    bundle.mkdir(parents=True, exist_ok=True)
    for directory in (bundle.parent, bundle):
        os.chmod(directory, 0o700)
    files = {source.name: source.read_text()}
    if settings.ssl_ca_file:
        files["ca.crt"] = Path(settings.ssl_ca_file).read_text()
    for name, text in files.items():
        _replace_private(bundle / name, text)
    return bundle


def write_client_config(path: Path, conn: Connection) -> None:
    """A role's client settings as a librdkafka properties file (``kcat -F``, or any
    confluent-kafka client), 0600: what a user's own producer or consumer needs to connect."""
    _replace_private(path, "".join(f"{k}={v}\n" for k, v in conn.conf().items()))


def ensure_users(admin: Connection, settings: Settings, roles: list[str]) -> None:
    """A SCRAM credential on the cluster for every role of this deployment (user
    ``<prefix><role>``), from (or into) its file in the credentials directory."""
    upserts: list[UserScramCredentialAlteration] = []
    scram = ScramCredentialInfo(ScramMechanism[settings.sasl_mechanism.replace("-", "_")], SCRAM_ITERATIONS)
    for role in roles:
        path = credentials_file(settings, role)
        if not path.is_file():
            user = principal(settings, role)
            _write_private(path, json.dumps({"username": user, "password": secrets.token_urlsafe(24)}))
        username, password = credentials(settings, role)
        upserts.append(UserScramCredentialUpsertion(username, scram, password.encode()))
    client = AdminClient(admin.conf(log_level=0))
    for future in client.alter_user_scram_credentials(upserts).values():
        future.result(30)


def apply_acls(admin: Connection, prefix: str, by_user: dict[str, list[access.Grant]]) -> int:
    """Make this deployment's ALLOW ACLs exactly its users' grants: create the missing ones
    (creating an existing ACL changes nothing), delete any other a user of this deployment holds
    (a role table that narrowed), and retire users of a role this deployment no longer has (a
    model left the pool), credential included. ACLs an operator added (DENY, other principals)
    are left alone."""
    wanted = {user: [_binding(user, g, op) for g in grants for op in g.operations] for user, grants in by_user.items()}
    client = AdminClient(admin.conf(log_level=0))
    for future in client.create_acls([b for bs in wanted.values() for b in bs], request_timeout=30).values():
        future.result()
    keep = {_identity(b) for bs in wanted.values() for b in bs}
    held = client.describe_acls(_ANY, request_timeout=30).result()
    stale = [b for b in held if b.permission_type == AclPermissionType.ALLOW and _identity(b) not in keep
             and access.is_deployment_user(b.principal.removeprefix("User:"), prefix)]
    if stale:
        for future in client.delete_acls([_exactly(b) for b in stale], request_timeout=30).values():
            future.result()
        log.warning("revoked %d ACLs no role grants any more: %s", len(stale), stale[:5])
    retired = sorted({b.principal.removeprefix("User:") for b in stale} - set(wanted))
    _delete_users(client, retired)
    return sum(len(b) for b in wanted.values())


def _delete_users(client: AdminClient, users: list[str]) -> None:
    """Delete the SCRAM credentials of retired users (one that has none is already gone)."""
    if not users:
        return
    deletions: list[UserScramCredentialAlteration] = [
        UserScramCredentialDeletion(u, m) for u in users for m in (ScramMechanism.SCRAM_SHA_512,)]
    for user, future in client.alter_user_scram_credentials(deletions).items():
        try:
            future.result(30)
        except KafkaException as exc:
            log.info("user %s: %s", user, exc)
    log.warning("retired users %s", users)


def _binding(user: str, g: access.Grant, op: str) -> AclBinding:
    return AclBinding(_RESOURCES[g.resource], g.name, _PATTERNS[g.pattern], f"User:{user}", "*",
                      AclOperation[op.upper()], AclPermissionType.ALLOW)


def _identity(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


# every ACL of the cluster (None matches any name, principal and host; the stubs do not say so)
_ANY = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                        AclOperation.ANY, AclPermissionType.ANY)


def _exactly(b: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                            b.permission_type)


def _replace_private(path: Path, text: str) -> None:
    """``path`` holding ``text``, 0600, rewritten only when it differs."""
    if not path.is_file() or path.read_text() != text:
        path.unlink(missing_ok=True)
        _write_private(path, text)


def _write_private(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)

"""The secure broker refuses what it should, and each role's principal can do exactly its job.

Every refusal sits beside a positive control on the same connection (the same principal doing
what its role allows), so a test cannot pass because nothing worked at all."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from fedrift.access import faust_app_id, host_role
from fedrift.connection import Connection, connect
from fedrift.provision import provision
from fedrift.topics import (
    DEPLOYMENTS,
    FEEDBACK,
    HPO_AGGREGATES,
    HPO_KEYS,
    HPO_METRICS,
    HPO_TRIGGERS,
    MODEL_STATUS,
    PREDICTIONS,
    REQUESTS,
    ROUTING_WEIGHTS,
)
from tests.integration.conftest import ensure_topics

pytestmark = pytest.mark.integration
DENIED_WRITE = KafkaError.TOPIC_AUTHORIZATION_FAILED


def _metadata(bootstrap: str, config: dict) -> tuple[bool, list[int]]:
    """Whether a metadata request succeeds, and the error codes the client reported."""
    errors: list[int] = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": lambda e: errors.append(e.code()),
                         **config})
    try:
        admin.list_topics(timeout=8)
        return True, errors
    except KafkaException:
        admin.poll(2)  # serves the error callbacks
        return False, errors


def _produce(conn: Connection, topic: str) -> int | None:
    """The error code of producing one record as ``conn`` (None: delivered)."""
    reports: list = []
    producer = Producer(conn.conf(log_level=0, **{"message.timeout.ms": 15000}))
    producer.produce(topic, b"x", b"k", partition=0, on_delivery=lambda err, msg: reports.append(err))
    producer.flush(20)
    assert len(reports) == 1, reports
    return None if reports[0] is None else reports[0].code()


def _read(conn: Connection, topic: str, timeout: float = 15, group: str | None = None) -> int | None:
    """The error code of reading ``topic`` as ``conn`` in a group of its own, or ``group``
    (None: a record was read)."""
    consumer = Consumer(conn.conf(**{"group.id": group or conn.group("test"), "log_level": 0,
                                     "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(10, 0.5):
                return msg.error().code() if msg.error() else None
    finally:
        consumer.close()
    raise AssertionError(f"nothing read from {topic} in {timeout}s")


def test_plaintext_and_a_wrong_password_are_refused(kafka):
    ok, _ = _metadata(kafka.bootstrap, {})
    assert not ok
    ok, errors = _metadata(kafka.bootstrap, kafka.security.client_config(password="wrong"))
    assert not ok and KafkaError._AUTHENTICATION in errors, errors
    ok, _ = _metadata(kafka.bootstrap, kafka.client_config())
    assert ok


def test_an_authenticated_user_without_acls_may_not_write(kafka):
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap, **kafka.client_config()})
    topic, user = f"t-{uuid.uuid4().hex[:6]}", f"u{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    scram = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(user, scram, b"pw-" + user.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
    stranger = Connection(kafka.bootstrap, kafka.security.client_config(user, "pw-" + user), "stranger")
    assert _produce(stranger, topic) == DENIED_WRITE


def test_each_role_may_do_its_job_and_nothing_it_must_not(settings):
    catalog = ensure_topics(settings)
    host, client = connect(settings, host_role("m1")), connect(settings, "client")
    aggregator = connect(settings, "aggregator")
    name = catalog.name
    # a host answers and reports, but cannot set routing or deployments
    assert _produce(host, name(PREDICTIONS)) is None
    assert _produce(host, name(ROUTING_WEIGHTS)) == DENIED_WRITE
    assert _produce(host, name(DEPLOYMENTS)) == DENIED_WRITE
    # a client sends requests, but cannot set routing
    assert _produce(client, name(REQUESTS)) is None
    assert _produce(client, name(ROUTING_WEIGHTS)) == DENIED_WRITE
    # the aggregator reads the masked metrics, never the raw requests
    assert _produce(host, name(HPO_METRICS)) is None
    assert _read(aggregator, name(HPO_METRICS)) is None
    assert _read(aggregator, name(REQUESTS)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _read(connect(settings, "controller"), name(REQUESTS)) is None
    # nor may a client read the raw stream or act on the control plane, nor a host aggregate
    assert _read(client, name(REQUESTS)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _read(client, name(FEEDBACK)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for topic in (HPO_TRIGGERS, HPO_KEYS, MODEL_STATUS):
        assert _produce(client, name(topic)) == DENIED_WRITE, topic
    assert _produce(host, name(HPO_AGGREGATES)) == DENIED_WRITE
    # a processor cannot join another's consumer group (and so take its partitions)
    drift, controller_app = connect(settings, "drift"), faust_app_id(settings.topic_prefix, "controller")
    assert _read(drift, name(REQUESTS), group=controller_app) == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_two_deployments_on_one_broker_share_no_principal(settings):
    other = dataclasses.replace(settings, topic_prefix=f"o{settings.topic_prefix}")
    mine, theirs = ensure_topics(settings), ensure_topics(other)
    my_client, my_host = connect(settings, "client"), connect(settings, host_role("m1"))
    assert my_client.security["sasl.username"] != connect(other, "client").security["sasl.username"]
    assert _produce(my_client, mine.name(REQUESTS)) is None
    assert _produce(my_client, theirs.name(REQUESTS)) == DENIED_WRITE
    with pytest.raises(KafkaException) as refused:
        Producer(my_host.conf(**{"transactional.id": f"{other.topic_prefix}host.m1-0", "log_level": 0})
                 ).init_transactions(30)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_a_host_cannot_fence_another_models_host(settings):
    ensure_topics(settings)
    own, other = f"{settings.topic_prefix}host.m1-0", f"{settings.topic_prefix}host.m2-0"
    host = connect(settings, host_role("m1"))
    Producer(host.conf(**{"transactional.id": own, "log_level": 0})).init_transactions(30)
    with pytest.raises(KafkaException) as refused:
        Producer(host.conf(**{"transactional.id": other, "log_level": 0})).init_transactions(30)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_a_roles_bundle_holds_its_secret_alone_and_is_enough_to_connect(settings):
    catalog = provision(settings, bundles=True)
    bundle = Path(settings.credentials_dir) / "bundles" / f"{settings.topic_prefix}client"
    assert sorted(p.name for p in bundle.iterdir()) == sorted([f"{settings.topic_prefix}client.json", "ca.crt"])
    assert all(p.stat().st_mode & 0o077 == 0 for p in bundle.iterdir()) and bundle.stat().st_mode & 0o077 == 0
    alone = dataclasses.replace(settings, credentials_dir=str(bundle), ssl_ca_file=str(bundle / "ca.crt"))
    assert _produce(connect(alone, "client"), catalog.name(REQUESTS)) is None
    with pytest.raises(ValueError, match="no credentials for role 'admin'"):
        connect(alone, "admin")


def test_a_role_the_deployment_no_longer_has_is_retired(settings):
    ensure_topics(settings)
    gone = connect(settings, host_role("m3"))
    assert _produce(gone, ensure_topics(settings).name(PREDICTIONS)) is None
    smaller = dataclasses.replace(settings, models=("m1", "m2"))
    catalog = provision(smaller)  # m3 left the pool: its user's ACLs and credential are removed
    ok, _ = _metadata(settings.bootstrap_servers, gone.security)
    assert not ok
    assert _produce(connect(smaller, host_role("m1")), catalog.name(PREDICTIONS)) is None

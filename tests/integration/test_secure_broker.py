"""The secure broker refuses what it should, and each role's principal can do exactly its job.

Every refusal sits beside a positive control on the same connection (the same principal doing
what its role allows), so a test cannot pass because nothing worked at all."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from fedrift.access import host_role
from fedrift.connection import Connection, connect
from fedrift.topics import DEPLOYMENTS, HPO_METRICS, PREDICTIONS, REQUESTS, ROUTING_WEIGHTS
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


def _read(conn: Connection, topic: str, timeout: float = 15) -> int | None:
    """The error code of reading ``topic`` as ``conn`` in a group of its own (None: a record was read)."""
    consumer = Consumer(conn.conf(**{"group.id": conn.group("test"), "log_level": 0, "enable.auto.commit": False,
                                     "auto.offset.reset": "earliest"}))
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


def test_a_host_cannot_fence_another_models_host(settings):
    ensure_topics(settings)
    own, other = f"{settings.topic_prefix}host.m1-0", f"{settings.topic_prefix}host.m2-0"
    host = connect(settings, host_role("m1"))
    Producer(host.conf(**{"transactional.id": own, "log_level": 0})).init_transactions(30)
    with pytest.raises(KafkaException) as refused:
        Producer(host.conf(**{"transactional.id": other, "log_level": 0})).init_transactions(30)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

"""The secure local broker refuses what it should: a plaintext client, a wrong password, and an
authenticated user with no ACL. Only the admin (a super user) is served."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

pytestmark = pytest.mark.integration


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


def test_plaintext_and_a_wrong_password_are_refused(kafka_secure):
    ok, _ = _metadata(kafka_secure.bootstrap, {})
    assert not ok
    ok, errors = _metadata(kafka_secure.bootstrap, kafka_secure.security.client_config(password="wrong"))
    assert not ok and KafkaError._AUTHENTICATION in errors, errors
    ok, _ = _metadata(kafka_secure.bootstrap, kafka_secure.client_config())
    assert ok


def test_an_authenticated_user_without_acls_may_not_write(kafka_secure):
    admin = AdminClient({"bootstrap.servers": kafka_secure.bootstrap, **kafka_secure.client_config()})
    topic, user = f"t-{uuid.uuid4().hex[:6]}", f"u{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    scram = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(user, scram, b"pw-" + user.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
    delivered: list = []
    producer = Producer({"bootstrap.servers": kafka_secure.bootstrap, "log_level": 0,
                         **kafka_secure.security.client_config(user, "pw-" + user)})
    producer.produce(topic, b"x", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    assert [e.code() for e in delivered] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], delivered

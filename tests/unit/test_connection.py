"""One Connection per role: security settings from the config, credentials per role, clear errors."""

import json

import pytest

from fedrift.config import Settings
from fedrift.connection import connect
from streams.app import faust_credentials


def _creds(tmp_path, user="t.client", password="pw"):
    (tmp_path / f"{user}.json").write_text(json.dumps({"username": user, "password": password}))
    return str(tmp_path)


def test_plaintext_carries_no_credentials():
    conn = connect(Settings(bootstrap_servers="b:9092", security_protocol="PLAINTEXT"), "client")
    assert conn.conf() == {"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT"}
    assert faust_credentials(conn) is None


def test_each_role_logs_in_with_its_own_file(tmp_path):
    (tmp_path / "ca.crt").write_text("pem")
    settings = Settings(bootstrap_servers="b:9092", credentials_dir=_creds(tmp_path),
                        ssl_ca_file=str(tmp_path / "ca.crt"), topic_prefix="t.")
    conn = connect(settings, "client")
    assert conn.security["sasl.username"] == "t.client" and conn.security["sasl.password"] == "pw"
    assert conn.security["security.protocol"] == "SASL_SSL" and conn.security["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert conn.group("routes").startswith("t.client.routes-")
    with pytest.raises(ValueError, match="no credentials for role 'drift'"):
        connect(settings, "drift")


def test_one_user_for_every_role_reads_its_password_from_a_file(tmp_path):
    (tmp_path / "pw").write_text("secret\n")
    settings = Settings(bootstrap_servers="b:9092", sasl_username="svc", sasl_password_file=str(tmp_path / "pw"))
    assert connect(settings, "drift").security["sasl.password"] == "secret"
    with pytest.raises(ValueError, match="PASSWORD_FILE"):
        connect(Settings(bootstrap_servers="b:9092", sasl_username="svc"), "drift")


def test_a_bad_protocol_or_a_missing_ca_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="FEDRIFT_SECURITY_PROTOCOL"):
        connect(Settings(bootstrap_servers="b:9092", security_protocol="TLS"), "client")
    with pytest.raises(ValueError, match="no such file"):
        connect(Settings(bootstrap_servers="b:9092", credentials_dir=_creds(tmp_path, "client"),
                         ssl_ca_file="/nope.pem"), "client")


def test_a_broken_credentials_file_is_named_and_the_local_broker_refuses_other_protocols(tmp_path):
    (tmp_path / "client.json").write_text('{"username": "client"}')
    with pytest.raises(ValueError, match=r"client\.json: not a credentials file"):
        connect(Settings(bootstrap_servers="b:9092", credentials_dir=str(tmp_path)), "client")
    with pytest.raises(ValueError, match="the local broker runs SASL_SSL, PLAINTEXT"):
        connect(Settings(security_protocol="SSL"), "client")

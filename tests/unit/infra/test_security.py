"""The secure cluster's material and broker settings: no listener without authentication,
deny by default, secrets owner-only and stable across restarts."""

from __future__ import annotations

from infra.security import SecurityMaterial


def test_no_listener_takes_an_unauthenticated_client_and_nothing_is_allowed_by_default(tmp_path):
    props = SecurityMaterial.ensure(tmp_path).broker_properties(9093, 9094, 10093)
    protocols = dict(item.split(":") for item in str(props["listener.security.protocol.map"]).split(","))
    assert protocols == {"SASL_SSL": "SASL_SSL", "BROKER": "SSL", "CONTROLLER": "SSL"}
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["listener.name.broker.ssl.client.auth"] == "required"
    assert props["inter.broker.listener.name"] == "BROKER"
    assert "password" not in str(props)  # the admin's credential is created over BROKER after start
    assert "PLAINTEXT" not in str(props["listeners"]) and "0.0.0.0" not in str(props["listeners"])
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "ANONYMOUS" not in str(props["super.users"])


def test_the_material_is_private_and_the_same_on_every_start(tmp_path):
    first = SecurityMaterial.ensure(tmp_path / "s")
    again = SecurityMaterial.ensure(tmp_path / "s")
    assert again.admin_password == first.admin_password and len(first.admin_password) >= 32
    assert again.ca.cert.read_bytes() == first.ca.cert.read_bytes()
    first.keystore()
    private = [p for p in (tmp_path / "s").iterdir() if p.suffix != ".crt"]
    assert {oct(p.stat().st_mode & 0o777) for p in private} == {"0o600"}
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"

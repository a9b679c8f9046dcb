"""The security material of a secure local cluster: TLS certificates, the admin's SCRAM
credentials, the brokers' settings for both, and the client settings that use them.

Clients reach the brokers over SASL_SSL with SCRAM-SHA-512 only; the controller listener takes
TLS with client certificates (the brokers' own), so no listener accepts an unauthenticated
connection. ``StandardAuthorizer`` denies whatever no ACL allows; the admin user and the brokers'
certificate principal are the super users. Everything lives under ``<cluster>/security/``,
private files 0600.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from infra.tls import KeyPair, make_ca, make_certificate

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
BROKER_PRINCIPAL = "User:CN=broker"


@dataclass(frozen=True)
class SecurityMaterial:
    directory: Path
    ca: KeyPair
    broker: KeyPair
    admin_password: str

    @classmethod
    def ensure(cls, directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> SecurityMaterial:
        """Load the cluster's material, creating it the first time (the brokers' certificate
        for ``hosts``)."""
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        creds = directory / "admin.json"
        if not creds.is_file():
            ca = make_ca(directory)
            make_certificate(directory, ca, "broker", hosts)
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"username": ADMIN, "password": secrets.token_urlsafe(24)}, fh)
        pair = lambda name: KeyPair(directory / f"{name}.crt", directory / f"{name}.key")  # noqa: E731
        return cls(directory, pair("ca"), pair("broker"), json.loads(creds.read_text())["password"])

    def keystore(self) -> Path:
        """The broker's PEM keystore: its PKCS#8 key followed by its certificate."""
        path = self.directory / "broker.keystore.pem"
        if not path.is_file():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.broker.key.read_bytes() + self.broker.cert.read_bytes())
        return path

    def scram_format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the admin's SCRAM credentials."""
        return ["--add-scram", f"{MECHANISM}=[name={ADMIN},password={self.admin_password}]"]

    def broker_properties(self, port: int, controller_port: int, internal_port: int, bind: str = "127.0.0.1",
                          host: str = "127.0.0.1") -> dict[str, object]:
        """Clients on SASL_SSL; brokers and controllers among themselves on TLS with client
        certificates (``BROKER``, ``CONTROLLER``), so no password is in the settings file."""
        return {
            "listeners": f"SASL_SSL://{bind}:{port},BROKER://{bind}:{internal_port},CONTROLLER://{bind}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{port},BROKER://{host}:{internal_port}",
            "inter.broker.listener.name": "BROKER",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,BROKER:SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.broker.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.keystore(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca.cert,
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};{BROKER_PRINCIPAL}",
        }

    def client_properties(self) -> str:
        """The admin's settings for Kafka's own command-line tools (``--command-config``)."""
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
                f'password="{self.admin_password}";')
        return (f"security.protocol=SASL_SSL\nsasl.mechanism={MECHANISM}\nsasl.jaas.config={jaas}\n"
                f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca.cert}\n")

    def broker_client_config(self) -> dict[str, str]:
        """confluent-kafka settings that log in with the brokers' own certificate (a super user)
        on the ``BROKER`` listener: how the admin's SCRAM credential is created after start."""
        return {"security.protocol": "SSL", "ssl.ca.location": str(self.ca.cert),
                "ssl.certificate.location": str(self.broker.cert), "ssl.key.location": str(self.broker.key)}

    def client_config(self, username: str = ADMIN, password: str | None = None) -> dict[str, str]:
        """confluent-kafka settings for a client of this cluster (the admin's by default)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": username,
            "sasl.password": self.admin_password if password is None else password,
            "ssl.ca.location": str(self.ca.cert),
        }

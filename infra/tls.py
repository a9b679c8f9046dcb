"""A local certificate authority and broker certificates, in PEM, made with ``cryptography``.

The building block of a secure local cluster (issue 13): the brokers present a certificate signed
by a CA that exists only under ``FEDRIFT_HOME/security/``, and every client trusts that CA alone.
Kafka reads PEM directly (``ssl.keystore.type=PEM``: the certificate chain and an unencrypted
PKCS#8 key; ``ssl.truststore.type=PEM``), and so do librdkafka and aiokafka, so no JKS or
PKCS#12 store and no keytool are needed. Private keys are written owner-only.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> ca = make_ca(d)
>>> broker = make_certificate(d, ca, "broker")
>>> sorted(p.name for p in d.iterdir())
['broker.crt', 'broker.key', 'ca.crt', 'ca.key']
>>> oct(broker.key.stat().st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest validity clients commonly accept for a server certificate


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # an existing file keeps its old mode through os.open


def _save(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    _write(pair.key, pkcs8, 0o600)
    return pair


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_ca(directory: Path, name: str = "fedrift local CA", days: int = VALID_DAYS) -> KeyPair:
    """A self-signed CA (ECDSA P-256) that may sign certificates and nothing below them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _save(directory, "ca", cert, key)


def make_certificate(directory: Path, ca: KeyPair, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
                     days: int = VALID_DAYS) -> KeyPair:
    """A server (and client) certificate for ``hosts`` (names or IP addresses), signed by ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_public = ca_cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(ca_public, ec.EllipticCurvePublicKey):
        raise ValueError(f"{ca.cert} is not a CA made by make_ca (ECDSA P-256)")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    cert = (
        _builder(name, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _save(directory, name, cert, key)

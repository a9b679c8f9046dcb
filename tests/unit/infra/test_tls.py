"""The local CA's certificates work in a real TLS handshake on 127.0.0.1, and only for a client
that trusts that CA."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from cryptography import x509

from infra.tls import make_ca, make_certificate


def _handshake(server_pair, client_ca) -> str:
    """Serve one TLS connection with ``server_pair``; connect trusting ``client_ca``; the
    negotiated version, or the client's verification error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_pair.cert, server_pair.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(client_ca.cert))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            version = tls.version() or ""
            tls.sendall(b"x")
            return version
    except ssl.SSLCertVerificationError as exc:
        return f"refused: {exc.verify_message}"
    finally:
        thread.join(10)
        listener.close()


def test_a_client_trusting_the_local_ca_completes_a_handshake_with_the_broker_certificate(tmp_path):
    ca = make_ca(tmp_path)
    broker = make_certificate(tmp_path, ca, "broker")
    assert _handshake(broker, ca).startswith("TLSv1.")
    cert = x509.load_pem_x509_certificate(broker.cert.read_bytes())
    issuer = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    cert.verify_directly_issued_by(issuer)


def test_a_client_trusting_another_ca_refuses_the_broker(tmp_path):
    broker = make_certificate(tmp_path / "a", make_ca(tmp_path / "a"), "broker")
    assert _handshake(broker, make_ca(tmp_path / "b")).startswith("refused")


def test_private_keys_are_owner_only_and_the_ca_cannot_be_a_broker(tmp_path):
    ca = make_ca(tmp_path)
    make_certificate(tmp_path, ca, "broker")
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.glob("*.key")} == {"0o600"}
    constraints = x509.load_pem_x509_certificate(ca.cert.read_bytes()).extensions.get_extension_for_class(
        x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 0
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate((tmp_path / "broker.key").read_bytes())

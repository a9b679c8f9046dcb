"""A model host's long-term secure-aggregation identity on its local disk.

The private keys (Ed25519 to sign, X25519 to receive sealed shares) are created once per host
id, written owner-readable only (0600, atomically), and reused on every restart, so the peers that
pinned the public halves keep trusting it. Only the public halves are published (``hpo.keys``).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "linear-0.identity"
>>> first = load_or_create(path)
>>> load_or_create(path).verify_key == first.verify_key, oct(path.stat().st_mode & 0o777)
(True, '0o600')
"""

from __future__ import annotations

from pathlib import Path

from fedrift.core.secagg import Identity
from fedrift.private_files import write_private


def load_or_create(path: Path) -> Identity:
    if path.is_file():
        return Identity.from_bytes(path.read_bytes())
    identity = Identity.generate()
    write_private(path, identity.to_bytes())
    return identity

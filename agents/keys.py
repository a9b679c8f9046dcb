"""A model host's secure-aggregation key pair on its local disk.

The private key is created once per host id, written owner-readable only (0600, atomically), and
reused on every restart, so the pairwise mask secrets its peers derived from its public key stay
valid. Only the public half is published (``hpo.keys``).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "linear-0.key"
>>> first = load_or_create(path)
>>> load_or_create(path).public_bytes == first.public_bytes, oct(path.stat().st_mode & 0o777)
(True, '0o600')
"""

from __future__ import annotations

import os
from pathlib import Path

from fedrift.core.aggregation import AgentKeys


def load_or_create(path: Path) -> AgentKeys:
    if path.is_file():
        return AgentKeys.from_private_bytes(path.read_bytes())
    keys = AgentKeys.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(keys.private_bytes())
    os.replace(tmp, path)
    return keys

"""Files only their owner may read, replaced atomically: a crash leaves the old content or the new,
never a torn mix (host checkpoints and identities, the aggregator's pinned keys).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "d" / "secret"
>>> write_private(path, b"one"); write_private(path, b"two")
>>> path.read_bytes(), oct(path.stat().st_mode & 0o777)
(b'two', '0o600')
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` owner-only (0600), durably (fsynced, with its directory) and atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

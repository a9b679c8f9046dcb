"""A model host's learned state on its local disk, so a restarted host resumes serving with the
model it had instead of an untrained one.

Written atomically (temporary file + rename) every ``FEDRIFT_CHECKPOINT_EVERY_S`` and at a clean
stop, under ``FEDRIFT_HOME/hosts/``. The file never leaves the host (it holds the local window,
i.e. raw data) and is read back only by the same host id; a checkpoint whose production
configuration is no longer the one in force (a promotion happened meanwhile) is ignored.
Events between the last checkpoint and a crash are learned again or not at all, depending on
the committed offsets: the model is approximately, not exactly, restored.

>>> import tempfile
>>> from fedrift.core.models import FAMILIES
>>> fam = FAMILIES["linear"]
>>> model = fam.build(fam.defaults, seed=0)
>>> model.learn_one([1.0, 2.0], 1)
>>> path = Path(tempfile.mkdtemp()) / "linear-0.pkl"
>>> save(path, HostSnapshot("cfg", model, window=[(1, [1.0, 2.0], 1)]))
>>> load(path, "cfg").window, load(path, "other") is None
([(1, [1.0, 2.0], 1)], True)
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class HostSnapshot:
    config_id: str  # production configuration the snapshot belongs to
    production: Any
    shadow: Any = None
    shadow_config: dict | None = None
    window: list[tuple[int, list[float], int]] = field(default_factory=list)  # the FHPO local window
    accuracy: list[float] = field(default_factory=list)
    sketch: Any = None
    errors: Any = None
    position: int = 0


def save(path: Path, snapshot: HostSnapshot) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(snapshot, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load(path: Path, config_id: str) -> HostSnapshot | None:
    """The host's snapshot if there is one for production configuration ``config_id``."""
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            snapshot = pickle.load(f)
    except Exception as exc:  # a torn or incompatible file: start fresh rather than not at all
        log.warning("checkpoint %s unreadable (%s); starting from an untrained model", path, exc)
        return None
    if not isinstance(snapshot, HostSnapshot) or snapshot.config_id != config_id:
        log.info("checkpoint %s is for another configuration; not restored", path)
        return None
    return snapshot

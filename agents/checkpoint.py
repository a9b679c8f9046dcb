"""A model host's state on its local disk, together with the input offsets it belongs to.

The state (the ``ModelReplica``: models, routing of its partitions, pending labels, counters, the
local window; and the ε ledger) is written right after a Kafka transaction commits, with the
positions that transaction committed. A restarted host loads it, seeks back to those positions
and replays up to the offsets committed in Kafka with its outputs switched off: the models learn
every label exactly once and the outputs already committed are not sent again (the checkpoint is
never ahead of Kafka, because it is written only after the commit).

The file holds raw local data (the window) and is only ever read by the host that wrote it:
written 0600, fsynced, atomically renamed, and authenticated with HMAC-SHA256 under a key that
never leaves the host, kept in its own directory (``key_path``, 0700/0600); the pickle is only
loaded once its tag verifies, so write access to the checkpoints is not code execution, and a
file that fails is refused (``CheckpointRefused``).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "hosts" / "linear-0.state"
>>> save(path, HostState(replica="r", ledger=None, offsets={("t", 0): 5}))
>>> load(path).offsets, oct(path.stat().st_mode & 0o777)
({('t', 0): 5}, '0o600')
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedrift.private_files import write_private

if TYPE_CHECKING:
    from fedrift.core.replica import ReplicaConfig

log = logging.getLogger(__name__)
TAG = hashlib.sha256().digest_size


class StaleCommit(Exception):
    """Kafka's committed offsets are behind (or lack) a partition the checkpoint has passed."""


def replay_bounds(checkpoint: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]
                  ) -> dict[tuple[str, int], int]:
    """Per partition, the offset up to which a restarted host replays with its outputs off.

    A checkpoint is written only after its transaction commits, so Kafka's committed offset of a
    partition can never be behind the checkpoint's. If it is, or missing, the fetch saw an old
    state of the group (a coordinator that moved, offsets not yet stable): replaying only up to
    it would send the outputs between the two a second time, so this refuses and the caller asks
    again.

    >>> replay_bounds({("t", 0): 5}, {("t", 0): 9, ("t", 1): 3})
    {('t', 0): 9, ('t', 1): 3}
    >>> replay_bounds({("t", 0): 5}, {("t", 0): 4})
    Traceback (most recent call last):
    ...
    agents.checkpoint.StaleCommit: committed offsets behind the checkpoint: t/0 at 4 < 5
    """
    behind = [f"{t}/{p} at {committed.get((t, p), 'none')} < {o}" for (t, p), o in sorted(checkpoint.items())
              if o >= 0 and committed.get((t, p), -1) < o]
    if behind:
        raise StaleCommit("committed offsets behind the checkpoint: " + ", ".join(behind))
    return {tp: o for tp, o in committed.items() if o >= 0}


def later(a: dict[tuple[str, int], int], b: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Per partition, the later of two offsets (a missing one counts as none).

    >>> later({("t", 0): 5, ("t", 1): -1001}, {("t", 0): 3, ("t", 1): 8, ("t", 2): 2})
    {('t', 0): 5, ('t', 1): 8, ('t', 2): 2}
    """
    return {tp: max(a.get(tp, -1), b.get(tp, -1)) for tp in sorted(a.keys() | b.keys())}


def commit_positions(positions: dict[tuple[str, int], int], replay_until: dict[tuple[str, int], int]
                     ) -> dict[tuple[str, int], int]:
    """The input offsets a transaction commits: how far the host has read, but never less than
    the replay bound, whose outputs are committed already. A restarted host reads each partition
    again from its checkpoint; while it has not caught up with a partition (a slow fetch, a
    partition whose leader is down), committing its read position would move the committed
    offset back, and a second restart would then answer that stretch again (seen in the chaos
    test as ~100 predictions answered twice after two restarts of one host).

    >>> commit_positions({("t", 0): 951, ("t", 1): 1200, ("t", 2): -2}, {("t", 0): 1146, ("t", 1): 1130})
    {('t', 0): 1146, ('t', 1): 1200}
    """
    merged = {tp: max(o, replay_until.get(tp, -1)) for tp, o in positions.items()}
    return {tp: o for tp, o in merged.items() if o >= 0}


@dataclass
class HostState:
    replica: Any
    ledger: Any
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read per partition
    rounds: dict | None = None  # secure-aggregation memory: peers masked with and unmasked for, per round
    n_partitions: int | None = None  # of the input topics when it was written


def ledger_lost(refused: bool, restored: bool, replay_until: dict[tuple[str, int], int]) -> bool:
    """Whether a host's ε ledger is unknown: its checkpoint was refused, or it has none although
    it committed outputs before (the checkpoint was deleted, or never written before a crash).

    >>> ledger_lost(False, False, {}), ledger_lost(False, False, {("t", 0): 7}), ledger_lost(True, False, {})
    (False, True, True)
    """
    return refused or (not restored and any(o > 0 for o in replay_until.values()))


def key_path(path: Path) -> Path:
    """Where the HMAC key of checkpoint ``path`` lives: in a ``keys`` directory beside the
    checkpoints' directory, not beside the file, so the two can be given different protection
    (write access to the checkpoints alone is then no way to forge one)."""
    return path.parent.parent / "keys" / f"{path.name}.hmac-key"


def _key(path: Path) -> bytes:
    kp = key_path(path)
    if not kp.is_file():
        write_private(kp, os.urandom(32))
        os.chmod(kp.parent, 0o700)
    return kp.read_bytes()


def save(path: Path, state: HostState) -> None:
    body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    write_private(path, hmac.new(_key(path), body, hashlib.sha256).digest() + body)


class CheckpointRefused(ValueError):
    """A checkpoint exists but fails authentication (or, authentic, cannot be read): its state,
    the ε ledger's memory included, is lost."""


def load(path: Path) -> HostState | None:
    """The host's last state; None when it has none. Raises ``CheckpointRefused`` for a file
    that fails authentication, before anything of it is unpickled."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    tag, body = data[:TAG], data[TAG:]
    if not hmac.compare_digest(tag, hmac.new(_key(path), body, hashlib.sha256).digest()):
        raise CheckpointRefused(f"checkpoint {path} fails authentication (tampered, torn, or its key {key_path(path)} "
                                "replaced); not loaded")
    try:
        state = pickle.loads(body)
    except Exception as exc:  # written by an incompatible version
        raise CheckpointRefused(f"checkpoint {path} unreadable ({exc}); not loaded") from None
    if not isinstance(state, HostState):
        raise CheckpointRefused(f"checkpoint {path} holds a {type(state).__name__}, not a HostState")
    return state


class TopologyChanged(ValueError):
    """The pool or the replica count differs from the one this host's checkpoint was made with."""


def check_topology(saved: ReplicaConfig, now: ReplicaConfig, path) -> None:
    """Routing and the ownership of partitions follow from the pool and the replica count: a host
    that resumed under other ones would answer or learn parts of its history again. Refuse."""
    before, after = (saved.pool, getattr(saved, "replicas", 1)), (now.pool, now.replicas)
    if before != after:
        raise TopologyChanged(
            f"host {now.host_id}: its checkpoint {path} was made with pool {list(before[0])} and "
            f"{before[1]} replicas, now {list(after[0])} and {after[1]}; changing them on live topics is not "
            "supported (it would answer or learn requests twice): use a new FEDRIFT_TOPIC_PREFIX"
        )

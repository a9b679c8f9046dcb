"""The host roster: every model host's public secure-aggregation keys, named by the operator.

Without a roster, hosts and the aggregator pin a host's keys at first sight on ``hpo.keys``; any
host principal (Kafka's ACLs cannot tell replicas apart) that publishes a key under a peer's name
before that peer does is then trusted in its place. A roster closes that gap: it is a JSON file
``{"<model>-<replica>": {"signing_key": hex, "public_key": hex}}`` handed to every host and to the
aggregator out of band (``FEDRIFT_HOST_ROSTER``), and only its pairs are trusted
(``fedrift.core.signatures.PinnedKeys``).

``fedrift roster`` writes the roster of the hosts whose identities live in one place
(``FEDRIFT_IDENTITY_DIR``, by default under ``FEDRIFT_HOME``), creating them, which is what
``fedrift run`` does before it starts the hosts; ``docker-compose.yml`` runs it as a one-shot
service (``--split``). Hosts at separate
sites each run ``fedrift roster --out site.json`` on their own home for their own hosts; the
operator merges the files (their union, e.g. ``jq -s add``) and hands the result to everyone.

>>> import tempfile
>>> from fedrift.config import Settings
>>> s = Settings(home=Path(tempfile.mkdtemp()), models=("pa",), replicas=2)
>>> roster = load_roster(write_roster(s, s.home / "roster.json"))
>>> sorted(roster), len(roster["pa-0"][0])
(['pa-0', 'pa-1'], 32)
"""

from __future__ import annotations

import json
from pathlib import Path

from agents import keys as host_keys
from fedrift.config import Settings
from fedrift.core.secagg import Identity

Roster = dict[str, tuple[bytes, bytes]]  # host -> (Ed25519 verify key, X25519 exchange key)


class RosterError(ValueError):
    """A roster file that cannot be used (its path and what is wrong with it)."""


def identity_path(settings: Settings, host: str) -> Path:
    """Where host ``host`` keeps its private identity (``agents.keys``)."""
    root = Path(settings.identity_dir) if settings.identity_dir else settings.home / "hosts"
    return root / f"{settings.topic_prefix}{host}.identity"


def entry(identity: Identity) -> dict[str, str]:
    return {"signing_key": identity.verify_key.hex(), "public_key": identity.exchange_key.hex()}


def write_roster(settings: Settings, path: Path, hosts: list[str] | None = None, split: bool = False) -> Path:
    """The roster of ``hosts`` (default: every replica of every model of ``settings``), their
    identities loaded or created where ``identity_path`` says, written to ``path``. ``split``: each
    host's identity in a directory of its own under that place (``<dir>/<host>/``), so each host
    can be handed its own identity alone (``docker-compose.yml`` mounts each host its directory)."""
    names = hosts or [f"{m}-{r}" for m in settings.models for r in range(settings.replicas)]

    def own(host: str) -> Path:
        path = identity_path(settings, host)
        return path.parent / host / path.name if split else path

    roster = {h: entry(host_keys.load_or_create(own(h))) for h in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(roster, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load_roster(path: Path) -> Roster:
    """The roster at ``path``; raises ``RosterError`` saying what is wrong with it."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RosterError(f"host roster {path}: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise RosterError(f"host roster {path}: not a JSON object of hosts")
    roster: Roster = {}
    for host, keys in raw.items():
        try:
            pair = (bytes.fromhex(keys["signing_key"]), bytes.fromhex(keys["public_key"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise RosterError(f"host roster {path}: {host}: needs hex signing_key and public_key ({exc})") from exc
        if any(len(k) != 32 for k in pair):
            raise RosterError(f"host roster {path}: {host}: keys are 32 bytes each")
        roster[host] = pair
    return roster


def roster_of(settings: Settings) -> Roster | None:
    """The configured roster, or None (keys pinned at first sight)."""
    return load_roster(Path(settings.host_roster)) if settings.host_roster else None


def own_identity(settings: Settings, host: str, roster: Roster | None) -> Identity:
    """Host ``host``'s identity. With a roster it must exist and be the roster's pair (raises
    ``RosterError`` otherwise): a host that made itself a fresh one would run, but no peer would
    trust it and no share sealed for it would open. Without a roster it is created if new."""
    path = identity_path(settings, host)
    if roster is None:
        return host_keys.load_or_create(path)
    if host not in roster:
        raise RosterError(f"host roster: {host} is not in it, so no peer would trust it")
    if not path.is_file():
        raise RosterError(f"host {host}: no identity at {path}, and the roster names one "
                          f"(FEDRIFT_IDENTITY_DIR: where its identity is)")
    identity = host_keys.load_or_create(path)
    if (identity.verify_key, identity.exchange_key) != roster[host]:
        raise RosterError(f"host {host}: its identity at {path} is not the pair the host roster names for it")
    return identity

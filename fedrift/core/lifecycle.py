"""The deployment lifecycle: the actions on ``deployments`` and how a configuration in one is checked.

A model's production configuration changes only by PROMOTE of a shadow started by SHADOW_START;
REJECT ends a shadow; PRUNE / RESTORE take a model out of routing and back. A configuration that
names an unknown hyperparameter or a value outside the family's search space is refused here, so
one bad control record cannot crash-loop every host.

>>> from fedrift.core.models import FAMILIES
>>> validated_config(FAMILIES["gnb"], '{"window": 300}')
{'window': 300}
>>> validated_config(FAMILIES["gnb"], '{"windw": 300}')
Traceback (most recent call last):
...
schemas.codec.InvalidRecord: gnb has no hyperparameter 'windw' (it has window)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable

from fedrift import json_config
from fedrift.core.models import FAMILIES, ModelFamily, clean_config
from schemas import InvalidRecord
from schemas.records import Deployment


class Action(enum.Enum):
    SHADOW_START = "SHADOW_START"
    PROMOTE = "PROMOTE"
    REJECT = "REJECT"
    PRUNE = "PRUNE"
    RESTORE = "RESTORE"

    @classmethod
    def of(cls, deployment: Deployment) -> Action:
        try:
            return cls(deployment["action"])
        except ValueError:
            raise InvalidRecord(f"unknown deployment action {deployment['action']!r}") from None


def new_deployment(model: str, action: Action, config_id: str, time: int, reason: str, evidence: dict[str, float],
                   config_json: str = "", round_id: str = "") -> Deployment:
    """A Deployment record (the one place one is built, so its fields match the schema)."""
    return {"model": model, "action": action.value, "config_id": config_id, "config_json": config_json,
            "round_id": round_id, "time": time, "reason": reason, "evidence": evidence}


def validate_deployment(d: Deployment) -> None:
    """Raise ``InvalidRecord`` for a deployment no stage may act on (every reader checks alike,
    so a bad record cannot leave the controller waiting on a shadow no host runs)."""
    action = Action.of(d)
    if action in (Action.SHADOW_START, Action.PROMOTE) and d["model"] in FAMILIES:
        validated_config(FAMILIES[d["model"]], d["config_json"])


def usable(deployments: Iterable[Deployment]) -> list[Deployment]:
    """The deployments that pass ``validate_deployment`` (for state restored at start)."""
    out = []
    for d in deployments:
        try:
            validate_deployment(d)
        except InvalidRecord:
            continue
        out.append(d)
    return out


def validated_config(family: ModelFamily, config_json: str) -> dict:
    """The full configuration (defaults filled in) of a ``config_json``, or ``InvalidRecord``."""
    given = json_config.loads(config_json)
    dims = {d.name: d for d in family.space}
    for name, value in list(given.items()):
        if name not in family.defaults:
            raise InvalidRecord(f"{family.name} has no hyperparameter {name!r} (it has {', '.join(family.defaults)})")
        given[name] = value = _of_kind(value, family.defaults[name], f"{family.name}.{name}")
        if value == family.defaults[name]:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRecord(f"{family.name}.{name} = {value} is not finite")
        if name not in dims or not _inside(dims[name], value):
            raise InvalidRecord(f"{family.name}.{name} = {value!r} is outside its search space")
    return clean_config({**family.defaults, **given})


def _of_kind(value, default, name: str):
    """``value`` as the type of its default (an int where a float is expected becomes that float),
    so one configuration has one id; a bool, or another type, is ``InvalidRecord``."""
    if type(value) is type(default):
        return value
    if type(default) is float and type(value) is int:
        return float(value)
    raise InvalidRecord(f"{name} = {value!r} is a {type(value).__name__}, expected a {type(default).__name__}")


def _inside(dim, value) -> bool:
    try:
        return value in dim
    except TypeError:
        return False

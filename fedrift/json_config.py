"""Configurations travel as JSON strings in records (``config_json``).

>>> loads('{"lr": 0.1}'), loads("")
({'lr': 0.1}, {})
>>> loads("[1]")
Traceback (most recent call last):
...
schemas.codec.InvalidRecord: config_json is a list, not an object
"""

from __future__ import annotations

import json

from fedrift.core.models import clean_config
from schemas import InvalidRecord


def dumps(config: dict) -> str:
    return json.dumps(clean_config(config), sort_keys=True)


def loads(text: str) -> dict:
    """The configuration in ``text``; ``InvalidRecord`` if it is not a JSON object."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"config_json is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"config_json is a {type(value).__name__}, not an object")
    return value

"""Configurations travel as JSON strings in records (``config_json``)."""

from __future__ import annotations

import json

from fedrift.core.models import clean_config


def dumps(config: dict) -> str:
    return json.dumps(clean_config(config), sort_keys=True)


def loads(text: str) -> dict:
    return json.loads(text) if text else {}

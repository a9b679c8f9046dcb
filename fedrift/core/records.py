"""What a stage emits: a record for a topic of the catalog, named by its base name (the shell adds
the prefix), with its key and, for the weights markers, the partition it must land in.

>>> Output("model.status", "ModelStatus", {"host": "a-0"}, "a-0").partition is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Output:
    topic: str
    record: str
    value: Mapping[str, Any]  # a record of schemas.records, e.g. a Prediction
    key: str
    partition: int | None = None

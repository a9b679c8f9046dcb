"""Encode and decode fedrift records in the Confluent wire format, with typed errors.

Every value is ``0x00`` (magic) + a 4-byte big-endian schema id + the Avro body. The id says which
schema *wrote* the value, so a reader always decodes with the writer's schema and resolves into
its own (current) one: data written before an evolution stays readable. Ids come from
``schemas/ids.json``, a table kept in the repository, so no registry service is needed; the ids are
compatible with a Confluent Schema Registry if one is introduced later.

>>> raw = codec().encode("Feedback", {"id": "r1", "label": 1, "time": 0})
>>> raw[:5].hex()
'0000000002'
>>> codec().decode(raw)
('Feedback', {'id': 'r1', 'label': 1, 'time': 0})
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = 0
_HEADER = struct.Struct(">bI")


class RecordError(ValueError):
    """A value that cannot be used; ``reason`` is the one-line cause sent to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TruncatedRecord(RecordError):
    """Fewer bytes than the header or the Avro body needs (or bytes left over after it)."""


class BadMagicByte(RecordError):
    """The value does not start with the wire-format magic byte 0."""


class UnknownSchemaId(RecordError):
    """The header names a schema id that is not in ``ids.json``."""


class SchemaMismatch(RecordError):
    """A value does not fit its schema (encode), or the writer cannot be resolved to the reader."""


class InvalidRecord(RecordError):
    """A well-formed record whose content is unusable."""


class NonFiniteFeature(InvalidRecord):
    """A feature is NaN or infinite."""


class FeatureCountMismatch(InvalidRecord):
    """The request has a different number of features than the stream."""


class Codec:
    """Schemas parsed once; ``encode`` writes the newest version of a record, ``decode`` reads any."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, ids_file: str = "ids.json") -> None:
        table = json.loads((schema_dir / ids_file).read_text())
        named: dict[str, Any] = {}
        self._by_id: dict[int, tuple[str, Any]] = {}
        self._latest: dict[str, tuple[int, Any]] = {}
        # Files may refer to records defined in other files (RoutedRequest embeds InferenceRequest);
        # ids are ordered so that a referenced record always has a smaller id.
        for sid in sorted(int(k) for k in table if not k.startswith("_")):
            raw = json.loads((schema_dir / table[str(sid)]).read_text())
            parsed = fastavro.parse_schema(raw, named_schemas=named)
            name = raw["name"]
            self._by_id[sid] = (name, parsed)
            if name not in self._latest or sid > self._latest[name][0]:
                self._latest[name] = (sid, parsed)

    @property
    def records(self) -> list[str]:
        return sorted(self._latest)

    def schema_id(self, record: str) -> int:
        return self._latest_of(record)[0]

    def encode(self, record: str, value: Mapping[str, Any]) -> bytes:
        """Serialise ``value`` with the newest schema of ``record``; raises ``SchemaMismatch``."""
        sid, schema = self._latest_of(record)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, sid))
        try:
            fastavro.schemaless_writer(buf, schema, value)
        except Exception as exc:  # fastavro raises TypeError/ValueError/KeyError/AttributeError
            raise SchemaMismatch(f"{record}: {_why_invalid(schema, value) or exc}") from exc
        return buf.getvalue()

    def name_of(self, data: bytes | None) -> str | None:
        """The record a value's header names, without reading its body (None: no known header)."""
        if data is None or len(data) < _HEADER.size:
            return None
        magic, sid = _HEADER.unpack_from(data)
        return self._by_id[sid][0] if magic == MAGIC and sid in self._by_id else None

    def decode(self, data: bytes | None, expect: str | tuple[str, ...] | None = None) -> tuple[str, Any]:
        """Return ``(record name, value)`` resolved into the record's newest schema; with ``expect``
        (a name or a tuple of names), any other record is a ``SchemaMismatch``. The value is the
        named record of ``schemas.records`` (typed ``Any`` here: which one is known at run time)."""
        if data is None or len(data) < _HEADER.size:
            raise TruncatedRecord(f"value has {0 if data is None else len(data)} bytes, header needs 5")
        magic, sid = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadMagicByte(f"magic byte is {magic & 0xFF:#04x}, expected 0x00 (not a fedrift Avro value)")
        if sid not in self._by_id:
            raise UnknownSchemaId(f"schema id {sid} is not in the schema-id table")
        name, writer = self._by_id[sid]
        allowed = (expect,) if isinstance(expect, str) else expect
        if allowed is not None and name not in allowed:
            raise SchemaMismatch(f"expected a {' or '.join(allowed)} record, got {name} (schema id {sid})")
        reader = self._latest_of(name)[1]  # old data comes back in the current shape
        body = io.BytesIO(memoryview(data)[_HEADER.size :])
        try:
            value = fastavro.schemaless_reader(body, writer, reader if reader is not writer else None)
        except (EOFError, StopIteration, IndexError, struct.error) as exc:
            raise TruncatedRecord(f"{name} body ends early ({len(data)} bytes): {str(exc) or 'end of data'}") from exc
        except Exception as exc:
            raise SchemaMismatch(f"{name} (schema id {sid}) cannot be read: {exc}") from exc
        left = len(data) - _HEADER.size - body.tell()
        if left:
            raise TruncatedRecord(f"{name} body is followed by {left} unread byte(s)")
        return name, value

    def _latest_of(self, record: str) -> tuple[int, Any]:
        try:
            return self._latest[record]
        except KeyError:
            raise SchemaMismatch(f"no schema for record {record!r}; known: {', '.join(self.records)}") from None


def _why_invalid(schema: Any, value: Any) -> str | None:
    try:
        validate(value, schema, raise_errors=True)
    except ValidationError as exc:
        return "; ".join(str(e) for e in exc.errors) or str(exc)
    except Exception as exc:
        return str(exc)
    return None


def validate_features(features: Sequence[float], expected: int | None = None) -> None:
    """Raise ``NonFiniteFeature`` or ``FeatureCountMismatch`` for a request the models cannot use.

    >>> validate_features([1.0, float("nan")])
    Traceback (most recent call last):
    ...
    schemas.codec.NonFiniteFeature: feature 1 is nan
    """
    if expected and len(features) != expected:
        raise FeatureCountMismatch(f"{len(features)} features, the stream has {expected}")
    for i, x in enumerate(features):
        if not math.isfinite(x):
            raise NonFiniteFeature(f"feature {i} is {x}")


@lru_cache(maxsize=1)
def codec() -> Codec:
    """The process-wide codec over ``schemas/`` (parsed once)."""
    return Codec()

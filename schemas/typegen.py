"""Write ``schemas/records.py``: one ``TypedDict`` per record, from the newest ``.avsc`` of each.

The typed records are generated, never edited by hand, so they cannot drift from the Avro
contract; ``tests/unit/schemas/test_typegen.py`` fails when the generated file is stale.
Run ``python -m schemas.typegen`` after adding or evolving a schema.

>>> python_type("long"), python_type(["null", "int"]), python_type({"type": "array", "items": "double"})
('int', 'int | None', 'list[float]')
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from schemas.codec import SCHEMA_DIR

_PRIMITIVES = {"string": "str", "long": "int", "int": "int", "double": "float", "float": "float",
               "boolean": "bool", "bytes": "bytes"}
HEADER = '''"""Typed records: one ``TypedDict`` per Avro record, generated from the newest ``.avsc`` of each
by ``python -m schemas.typegen``. Do not edit; evolve the ``.avsc`` and regenerate."""

from __future__ import annotations

from typing import Literal, TypedDict
'''


def python_type(avro: Any) -> str:
    """The Python annotation of an Avro type (a named record by its short name)."""
    if isinstance(avro, list):
        types = [python_type(t) for t in avro if t != "null"]
        return " | ".join(types + (["None"] if "null" in avro else []))
    if isinstance(avro, dict):
        kind = avro["type"]
        if kind == "array":
            return f"list[{python_type(avro['items'])}]"
        if kind == "map":
            return f"dict[str, {python_type(avro['values'])}]"
        if kind == "enum":
            return "Literal[" + ", ".join(json.dumps(s) for s in avro["symbols"]) + "]"
        if kind == "record":
            return avro["name"]
        return python_type(kind)
    return _PRIMITIVES.get(avro) or avro.rsplit(".", 1)[-1]


def newest_schemas(schema_dir: Path = SCHEMA_DIR) -> dict[str, dict]:
    """Record name -> its newest schema, in schema-id order."""
    table = json.loads((schema_dir / "ids.json").read_text())
    newest: dict[str, dict] = {}
    for sid in sorted(int(k) for k in table if not k.startswith("_")):
        raw = json.loads((schema_dir / table[str(sid)]).read_text())
        newest.pop(raw["name"], None)
        newest[raw["name"]] = raw
    return newest


def _nested_records(avro: Any) -> list[dict]:
    """Record schemas defined inline in ``avro``, innermost first."""
    if isinstance(avro, list):
        return [r for t in avro for r in _nested_records(t)]
    if not isinstance(avro, dict):
        return []
    if avro.get("type") == "record":
        return [r for f in avro["fields"] for r in _nested_records(f["type"])] + [avro]
    return _nested_records(avro.get("items")) + _nested_records(avro.get("values"))


def _class(raw: dict) -> str:
    doc = textwrap.fill(raw.get("doc", raw["name"]).strip(), 96, initial_indent='    """',
                        subsequent_indent="    ") + '"""'
    fields = [f"    {f['name']}: {python_type(f['type'])}" for f in raw["fields"]]
    return "\n".join([f"class {raw['name']}(TypedDict):", doc, "", *fields]) + "\n"


def render(schema_dir: Path = SCHEMA_DIR) -> str:
    classes: dict[str, str] = {}
    for raw in newest_schemas(schema_dir).values():
        for record in _nested_records(raw):
            classes.setdefault(record["name"], _class(record))
    return "\n\n".join([HEADER, *classes.values()])


if __name__ == "__main__":
    (SCHEMA_DIR / "records.py").write_text(render())

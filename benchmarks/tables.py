"""Put each benchmark's latest table into BENCHMARKS.md, between ``<!-- table:NAME -->`` and
``<!-- /table -->``, from ``benchmarks/results/NAME.json`` (its ``table`` and provenance), so no
table in BENCHMARKS.md is edited by hand. ``make bench`` runs it after the benchmarks.

    .venv/bin/python -m benchmarks.tables
"""

from __future__ import annotations

import json
import re

from benchmarks.report import RESULTS, ROOT

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def render(name: str) -> str | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    p = result["provenance"]
    stamp = f"commit {p['commit'][:10]}{' (dirty)' if p['dirty'] else ''}, {p['time']}, {p['machine']['cpus']} CPUs"
    return f"{result['table']}\n\n<sub>{stamp}; raw results in `benchmarks/results/{name}.json`</sub>\n"


def main() -> None:
    doc = ROOT / "BENCHMARKS.md"
    text = doc.read_text()

    def fill(m: re.Match) -> str:
        body = render(m["name"])
        return m.group(0) if body is None else f"{m.group(1)}{body}{m.group(4)}"

    doc.write_text(BLOCK.sub(fill, text))
    print("BENCHMARKS.md tables:", ", ".join(m["name"] for m in BLOCK.finditer(text)))


if __name__ == "__main__":
    main()

"""What every benchmark writes beside its printed table: a JSON record that says what was run, on
which commit and package versions, over which data (checksums), so a table can be regenerated
and told apart from another.

>>> spread([3.0, 1.0, 2.0])
'2 (1–3)'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("confluent-kafka", "faust-streaming", "river", "scikit-optimize", "diffprivlib", "numpy", "fastavro")


def spread(values, digits: int = 0) -> str:
    """``median (min–max)`` of the finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(statistics.median(vals))} ({f.format(min(vals))}–{f.format(max(vals))})"


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def provenance(data_files: list[Path] = ()) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "packages": {p: metadata.version(p) for p in PACKAGES},
        "data": {p.name: checksum(p) for p in data_files},
    }


def write_result(name: str, result: dict, data_files: list[Path] = ()) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"provenance": provenance(data_files), **result}, indent=1, default=str) + "\n")
    print(f"\nwritten {path.relative_to(ROOT)}")
    return path

"""Labelled event sources: a CSV file (last column the label) or one of River's drifting generators.

Each source yields ``(features: list[float], label: int)`` in stream order.

>>> rows = list(synthetic("sea", 5, seed=1))
>>> len(rows), len(rows[0][0])
(5, 3)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from river.datasets import synth

from schemas import RecordError, validate_features

SYNTHETIC = ("sea", "agrawal", "hyperplane", "rbf", "led", "stagger", "shift", "sine", "mixed", "rtree", "waveform")


class DataError(ValueError):
    """The data source cannot be read (missing file, bad column, non-numeric value)."""


def read_csv(path: str | Path, label_column: str | None = None) -> tuple[list[str], Iterator[tuple[list[float], int]]]:
    """Return feature names and an iterator of rows; the label column defaults to the last one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header or len(header) < 2:
        raise DataError(f"{path}: needs a header row with at least one feature and a label column")
    label_idx = len(header) - 1 if label_column is None else _index(header, label_column, path)
    names = [h for i, h in enumerate(header) if i != label_idx]

    def rows() -> Iterator[tuple[list[float], int]]:
        labels: dict[str, int] = {}
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}:{lineno}: {len(row)} columns, the header has {len(header)}")
                try:
                    x = [_feature(v) for i, v in enumerate(row) if i != label_idx]
                except ValueError as exc:
                    raise DataError(f"{path}:{lineno}: {exc}") from None
                raw = row[label_idx]
                try:
                    y = int(float(raw))
                except ValueError:  # categorical label: number classes in order of appearance
                    y = labels.setdefault(raw, len(labels))
                yield x, y

    return names, rows()


def finite_rows(rows: Iterable[tuple[list[float], int]], source: str) -> Iterator[tuple[list[float], int]]:
    """``rows`` unchanged, or a ``DataError`` naming the first event whose features are not all
    finite (the simulator cannot learn from it; the pipeline would dead-letter it)."""
    for i, (x, y) in enumerate(rows, start=1):
        try:
            validate_features(x)
        except RecordError as exc:
            raise DataError(f"{source}: event {i}: {exc.reason}") from None
        yield x, y


_BOOLEANS = {"true": 1.0, "false": 0.0}


def _feature(cell: str) -> float:
    """A numeric cell, or a boolean as written by pandas/Spark (``True``/``false`` → 1/0)."""
    flag = _BOOLEANS.get(cell.strip().lower())
    if flag is not None:
        return flag
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"feature {cell!r} is neither a number nor true/false") from None


def _index(header: list[str], column: str, path: Path) -> int:
    if column not in header:
        raise DataError(f"{path}: no column {column!r}; columns are {', '.join(header)}")
    return header.index(column)


def synthetic(name: str, n: int, seed: int = 0) -> Iterator[tuple[list[float], int]]:
    """``n`` events of a River generator with drift built in (abrupt concept switches for SEA,
    Agrawal, STAGGER, Sine and Mixed every ``n/4`` events; continuous drift for Hyperplane, RBF
    and LED; a random tree replaced by another around ``n/2`` for ``rtree``; none for the noisy
    40-feature ``waveform``), or ``shift``: one abrupt change at ``n/2`` of both the inputs and
    the concept."""
    if name == "shift":
        yield from _shift(n, seed)
        return
    stream = _generator(name, n, seed)
    keys: list | None = None
    for x, y in stream.take(n):
        if keys is None:
            keys = sorted(x)
        yield [_num(x[k]) for k in keys], int(y)


def _shift(n: int, seed: int) -> Iterator[tuple[list[float], int]]:
    """5 Gaussian features; y = [x0 + x1 > 0]. At n/2, features 2-3 move by +1.5 sd and the
    concept becomes y = [x0 - x1 > 0.5]: input drift and concept drift at the same moment."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for t in range(n):
        x = rng.normal(size=5)
        if t < n // 2:
            y = int(x[0] + x[1] > 0)
        else:
            x[2:4] += 1.5
            y = int(x[0] - x[1] > 0.5)
        yield [float(v) for v in x], y


def _num(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0


def _generator(name: str, n: int, seed: int):
    quarter = max(n // 4, 1)
    if name == "sea":
        return _switching([synth.SEA(variant=v, seed=seed + v) for v in (0, 1, 2, 3)], quarter)
    if name == "agrawal":
        fns = (0, 2, 5, 8)
        return _switching([synth.Agrawal(classification_function=f, seed=seed + f) for f in fns], quarter)
    if name == "stagger":
        return _switching([synth.STAGGER(classification_function=f, seed=seed + f) for f in (0, 1, 2, 0)], quarter)
    if name == "hyperplane":
        return synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5, mag_change=0.001, noise_percentage=0.05)
    if name == "rbf":
        return synth.RandomRBFDrift(
            seed_model=seed,
            seed_sample=seed + 1,
            n_classes=3,
            n_features=10,
            n_centroids=30,
            change_speed=0.0005,
            n_drift_centroids=15,
        )
    if name == "sine":
        return _switching([synth.Sine(classification_function=f, seed=seed + f) for f in (0, 2, 1, 3)], quarter)
    if name == "mixed":
        return _switching(
            [synth.Mixed(classification_function=f, seed=seed + 2 * k + f) for k, f in enumerate((0, 1, 0, 1))], quarter
        )
    if name == "rtree":

        def tree(k: int):
            return synth.RandomTree(seed_tree=seed + k, seed_sample=seed + 10 + k, n_num_features=6, n_cat_features=0)

        return synth.ConceptDriftStream(tree(0), tree(1), position=max(n // 2, 1), width=max(n // 40, 1), seed=seed)
    if name == "waveform":
        return synth.Waveform(seed=seed, has_noise=True)
    if name == "led":
        return synth.LEDDrift(seed=seed, noise_percentage=0.1, irrelevant_features=True, n_drift_features=7)
    raise DataError(f"unknown stream {name!r}; choose from {', '.join(SYNTHETIC)}")


def _switching(concepts: list, every: int):
    """Concept ``i`` for events ``[i*every, (i+1)*every)``, the last one to the end: abrupt switches."""

    class _Switching:
        def take(self, n: int):
            iters = [iter(c) for c in concepts]
            for t in range(n):
                yield next(iters[min(t // every, len(iters) - 1)])

    return _Switching()

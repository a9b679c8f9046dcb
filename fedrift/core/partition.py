"""Routing of one request partition, computed by every model's host for itself.

No router process decides who serves a request. The controller writes each new set of routing
weights into every partition of ``inference.requests`` as a marker record, so the weights in force
for a request are fixed by its position in the partition. Every host of every model that reads a
partition therefore sees the same records in the same order and, running the same deterministic
deficit rule over them, reaches the same decision for each request: exactly one model serves it,
with the patent's exact traffic shares per partition, and nothing shared or mutable has to be
kept consistent across processes.

Everything that decides a request's fate lives here, per partition, so it is the same in every
host: the feature-count contract, the de-duplication of request ids, the weights in force and the
deficit counts.

>>> r = PartitionRouting(pool=("a", "b"))
>>> [r.route({"id": f"r{i}", "features": [1.0]}) for i in range(3)]
['a', 'b', 'a']
>>> r.apply_weights({"version": 1, "weights": {"a": 0.0, "b": 1.0}})
>>> r.route({"id": "r3", "features": [1.0]}), r.route({"id": "r0", "features": [1.0]})
('b', None)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

from fedrift.core.router import DeficitRouter
from schemas import FeatureCountMismatch, InvalidRecord, NonFiniteFeature, validate_features
from schemas.records import InferenceRequest

MAX_ABS_FEATURE = 1e15  # finite but larger values overflow the trees' Gaussian estimators
MAX_ID_CHARS = 1024  # a request id travels as the key and in the value of every output


def validate_id(request_id: str) -> None:
    """Refuse an id no output could carry: each output repeats it, and one over the producer's
    size limit could never be committed.

    >>> validate_id("x" * 2000)
    Traceback (most recent call last):
    ...
    schemas.codec.InvalidRecord: request id of 2000 characters (at most 1024)
    """
    if not request_id:
        raise InvalidRecord("request id is empty")
    if len(request_id) > MAX_ID_CHARS:
        raise InvalidRecord(f"request id of {len(request_id)} characters (at most {MAX_ID_CHARS})")


class PartitionRouting:
    """The routing state of one partition: contract, recent ids, weights in force, deficits."""

    def __init__(self, pool: tuple[str, ...], n_features: int = 0, remember: int = 100_000) -> None:
        if not pool:
            raise ValueError("routing needs a non-empty pool of models")
        self.pool = tuple(pool)
        self.n_features = n_features or None
        self.remember = remember
        self.router = DeficitRouter({m: 1.0 for m in self.pool})
        self.recent: OrderedDict[str, None] = OrderedDict()

    @property
    def version(self) -> int:
        return self.router.version

    def check(self, request: InferenceRequest) -> None:
        """Raise a ``RecordError`` for a request no model may use; the first valid request of the
        partition fixes the feature count when the settings do not."""
        validate_id(request["id"])
        features = request["features"]
        if not features:
            raise FeatureCountMismatch("request has no features")
        validate_features(features, self.n_features)
        for i, x in enumerate(features):
            if abs(x) > MAX_ABS_FEATURE:
                raise NonFiniteFeature(f"feature {i} is {x}, beyond ±{MAX_ABS_FEATURE:g} (models overflow)")
        if self.n_features is None:
            self.n_features = len(features)

    def route(self, request: InferenceRequest) -> str | None:
        """The model that serves ``request``, or None for an id already routed (a duplicate)."""
        return self.router.choose() if self.admit(request) else None

    def admit(self, request: InferenceRequest) -> bool:
        """Whether ``request`` is new here (False for an id already seen); raises a ``RecordError``
        for a request no model may use."""
        self.check(request)
        rid = request["id"]
        if rid in self.recent:
            return False
        self.recent[rid] = None
        if len(self.recent) > self.remember:
            self.recent.popitem(last=False)
        return True

    def apply_weights(self, value: Mapping) -> None:
        """Put a weights marker in force from this point of the partition on. A marker that is
        not newer than the weights in force is stale and ignored; an unusable one raises
        ``InvalidRecord`` (the caller dead-letters it) and leaves routing as it was."""
        weights = validated_weights(value, self.pool)
        if value["version"] <= self.router.version:
            return
        self.router.set_weights({m: w for m, w in weights.items() if w > 0}, value["version"])


def validated_weights(value: Mapping, pool: tuple[str, ...]) -> dict[str, float]:
    """The pool's weights from a RoutingWeights record, or ``InvalidRecord`` saying why not.

    >>> validated_weights({"version": 2, "weights": {"a": 1.0, "x": 3.0}}, ("a", "b"))
    {'a': 1.0, 'b': 0.0}
    >>> validated_weights({"version": 2, "weights": {"a": float("inf")}}, ("a",))
    Traceback (most recent call last):
    ...
    schemas.codec.InvalidRecord: weight of 'a' is inf (weights must be finite and >= 0)
    """
    if value["version"] < 0:
        raise InvalidRecord(f"version {value['version']} is negative")
    for model, w in value["weights"].items():
        if not math.isfinite(w) or w < 0:
            raise InvalidRecord(f"weight of {model!r} is {w} (weights must be finite and >= 0)")
    weights = {m: float(value["weights"].get(m, 0.0)) for m in pool}
    if sum(weights.values()) <= 0:
        raise InvalidRecord(f"no model of the pool {list(pool)} has a positive weight")
    return weights

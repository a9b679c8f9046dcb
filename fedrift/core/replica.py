"""One replica of one model: the host's whole data-path logic, records in and records out.

A replica owns some partitions of ``inference.requests``. For each request it computes the routing
decision every other host computes too (``PartitionRouting``), predicts (every model scores every
request: test-then-train), answers only when it serves, and learns when the label arrives (inline,
or later on ``inference.feedback``). It runs a shadow candidate beside production on a stable
slice of requests (built from production at the first request of that slice after its
deployment, so where it starts does not depend on the host's timing), applies deployments,
and reports its status on the evidence cadence.

With shared training, its models also learn the labelled requests of the partitions the other
replicas serve (``on_peer_request``): a replica that learned a random third of a stream loses
the stream's order (on Electricity, River's passive-aggressive classifier scores 91.4 % on the
whole stream and 87.0 % on a third). Those requests are not scored, not reported as evidence
and not kept in the HPO window, so its scores and counters still describe its own partitions
(its model, predictions and input sketch reflect all it learned).

Nothing here touches Kafka: the host shell feeds records in and sends the ``Output`` records it
gets back, inside one transaction with the input offsets; the simulator drives the same class in
memory. Its whole state pickles, so the shell can checkpoint it together with those offsets.

>>> from fedrift.core.models import FAMILIES
>>> rep = ModelReplica(FAMILIES["gnb"], ReplicaConfig(pool=("gnb", "linear"), model="gnb"))
>>> out = rep.on_request(0, {"id": "r1", "event_time": 0, "features": [1.0, 2.0], "label": 1})
>>> [o.record for o in out], rep.n_learned
(['Prediction', 'ModelStatus'], 1)
>>> rep.on_request(0, {"id": "r2", "event_time": 0, "features": [1.0, 2.0], "label": None})
[]
>>> [o.record for o in rep.on_label("r2", 0)], rep.n_learned
(['ModelStatus'], 2)
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from fedrift.core.drift import ErrorDriftDetector
from fedrift.core.fhpo import LocalWindow
from fedrift.core.lifecycle import Action, validated_config
from fedrift.core.metrics import WindowedMean
from fedrift.core.models import FAMILIES, Classifier, ModelFamily, config_id
from fedrift.core.partition import PartitionRouting, validate_id
from fedrift.core.records import Output
from fedrift.core.routing import InputSketch, evidence_due
from fedrift.topics import MODEL_STATUS, PREDICTIONS, SHADOW_RESULTS
from schemas.records import Deployment, InferenceRequest, ModelStatus, Prediction, ShadowResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaTuning:
    """The replica's windows and memories (settable as ``FEDRIFT_REPLICA_<FIELD>``)."""

    accuracy_window: int = 1000  # windowed accuracy for pruning and drift compensation ...
    keep_after_drift: int = 300  # ... cut to its last N events at a drift trigger
    local_window: int = 1000  # labelled events kept for FHPO rounds
    remember_ids: int = 100_000  # request ids remembered per partition for de-duplication
    label_horizon_ms: int = 3_600_000  # a held label older than the requests by this much is an orphan


@dataclass(frozen=True)
class ReplicaConfig:
    pool: tuple[str, ...]  # every model of the pool, in the order every host uses
    model: str
    replica: int = 0
    replicas: int = 1  # of this model: replica r owns the request partitions p with p % replicas == r
    n_features: int = 0  # 0: the first valid request of each partition fixes it
    shadow_fraction: float = 0.2  # stable share of requests a shadow also answers
    status_every: int = 200  # labelled events between ModelStatus records (more at a cold start)
    tuning: ReplicaTuning = field(default_factory=ReplicaTuning)
    pending_limit: int = 100_000  # requests waiting for a late label
    early_limit: int = 100_000  # labels waiting for their request: past it the host stops reading labels
    warm_start: bool = True  # a shadow starts from production's learned state where the family allows
    seed: int = 0

    @classmethod
    def of(cls, source: ReplicaSource, model: str, replica: int) -> ReplicaConfig:
        """Replica ``replica`` of ``model`` as ``source`` (the settings, or the simulator's
        pipeline configuration) configures every host: one reading for both."""
        return cls(
            pool=source.pool,
            model=model,
            replica=replica,
            replicas=source.replicas,
            n_features=source.n_features,
            shadow_fraction=source.shadow_fraction,
            status_every=source.status_every,
            tuning=source.replica,
            pending_limit=source.pending_labels,
            early_limit=source.pending_labels,
            warm_start=source.warm_start,
            seed=source.seed,
        )

    @property
    def host_id(self) -> str:
        return f"{self.model}-{self.replica}"


class ReplicaSource(Protocol):
    """The settings a replica is configured from, named as ``Settings`` names them."""

    @property
    def pool(self) -> tuple[str, ...]: ...
    @property
    def replicas(self) -> int: ...
    @property
    def n_features(self) -> int: ...
    @property
    def shadow_fraction(self) -> float: ...
    @property
    def status_every(self) -> int: ...
    @property
    def replica(self) -> ReplicaTuning: ...
    @property
    def pending_labels(self) -> int: ...
    @property
    def warm_start(self) -> bool: ...
    @property
    def seed(self) -> int: ...


@dataclass
class Pending:
    """What a request leaves behind until its label arrives."""

    x: list[float]
    prediction: int | None
    shadow_prediction: int | None
    production_latency_ms: float
    shadow_latency_ms: float
    event_time: int = 0  # the request's: an HPO round tunes on the events up to its trigger's time
    # the configurations that answered it, and which shadow run: a label that comes after that
    # run ended (a verdict, or another start, of the same configuration too) is no evidence
    # for the run being tested
    config_id: str = ""
    shadow_config_id: str = ""
    shadow_run: int = 0


def mirrored(request_id: str, fraction: float) -> bool:
    """A stable pseudo-random choice of ``fraction`` of requests (same id, same answer)."""
    return id_digest(request_id) / 2**64 < fraction


def id_digest(request_id: str) -> int:
    """A 64-bit hash of a request id. The sum of these over the ids a model learned (mod 2**64)
    equals the sum over the labelled ids exactly when each was learned once, barring collisions."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")


class ModelReplica:
    """The pure state machine of one model host."""

    learned_as_of = -1  # event time of the newest own request learned (a checkpoint from before it: -1)

    def __init__(self, family: ModelFamily, config: ReplicaConfig) -> None:
        self.family = family
        self.cfg = config
        self.config = dict(family.defaults)
        self.config_id = config_id(self.config)
        self.production: Classifier = family.build(self.config, seed=config.seed)
        self.shadow: Classifier | None = None
        self.shadow_config: dict | None = None
        self.shadow_runs = 0  # shadow starts applied: the run a pending request's shadow answer belongs to
        self.partitions: dict[int, PartitionRouting] = {}
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.early: OrderedDict[str, tuple[object, int]] = OrderedDict()  # id -> (label, its time)
        self.stream_time = 0  # latest request time seen (ms)
        self.accuracy = WindowedMean(config.tuning.accuracy_window)
        self.errors = ErrorDriftDetector()
        self.error_drift = False
        self.sketch = InputSketch(family.memory(self.config))
        self.window = LocalWindow(config.tuning.local_window)
        self.n_learned = self.n_correct = self.n_reported = 0
        self.learned_digest = 0
        self.peer_pending: OrderedDict[str, list[float]] = OrderedDict()  # peer requests awaiting labels
        self.n_peer_learned = self.n_peer_reported = 0
        self.peer_digest = 0
        self.model_errors = 0
        self.epsilon_spent = 0.0

    # -- pickling: the family holds lambdas, so it travels by name ------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["family"] = self.family.name
        return state

    def __setstate__(self, state: dict) -> None:
        state["family"] = FAMILIES[state["family"]]
        state.setdefault("peer_pending", OrderedDict())  # a checkpoint from before shared training
        state.setdefault("n_peer_learned", 0)
        state.setdefault("n_peer_reported", 0)
        state.setdefault("peer_digest", 0)
        state.setdefault("shadow_runs", 0)
        self.__dict__.update(state)

    # -- data path ----------------------------------------------------------------------------
    def routing(self, partition: int) -> PartitionRouting:
        if partition not in self.partitions:
            cfg = self.cfg
            self.partitions[partition] = PartitionRouting(cfg.pool, cfg.n_features, cfg.tuning.remember_ids)
        return self.partitions[partition]

    def on_weights(self, partition: int, value: dict) -> None:
        """A weights marker of ``partition``; raises ``InvalidRecord`` for an unusable one."""
        self.routing(partition).apply_weights(value)

    def on_request(self, partition: int, request: InferenceRequest, time_ms: int = 0) -> list[Output]:
        """Route, predict, answer if serving; learn now if the label came with it (or before it).
        ``time_ms`` is the record's time (for expiring labels that never find their request).
        Raises a ``RecordError`` for a request no model may use."""
        serving = self.routing(partition).route(request)
        if time_ms > self.stream_time:
            self.stream_time = time_ms
            self._expire_orphans()
        if serving is None:
            return []  # a duplicate id: its one prediction already exists
        rid, x = request["id"], request["features"]
        t0 = time.perf_counter()
        proba = self._guarded(self.production.predict_proba_one, x) or {}
        prediction = max(proba, key=lambda c: proba[c]) if proba else None
        latency = (time.perf_counter() - t0) * 1000
        shadow_pred, shadow_latency = None, 0.0
        if self.shadow_config is not None and mirrored(rid, self.cfg.shadow_fraction):
            if self.shadow is None:  # its first request: production's state as of this request
                self.shadow = self._warm(self.shadow_config)
            t1 = time.perf_counter()
            shadow_pred = self._guarded(self.shadow.predict_one, x)
            shadow_latency = (time.perf_counter() - t1) * 1000
        out = []
        if serving == self.cfg.model:
            out.append(self._prediction(request, prediction, proba, latency, partition))
        pending = Pending(x, prediction, shadow_pred, latency, shadow_latency, request["event_time"], self.config_id,
                          "" if shadow_pred is None or self.shadow_config is None else config_id(self.shadow_config),
                          self.shadow_runs)
        label = request["label"] if request["label"] is not None else self.early.pop(rid, (None, 0))[0]
        if label is not None:
            return out + self._learn(rid, pending, label)
        self._remember(self.pending, rid, pending, self.cfg.pending_limit)
        return out

    def on_peer_request(self, partition: int, request: InferenceRequest, time_ms: int = 0) -> None:
        """A request of a partition another replica serves (shared training): learn it once its
        label is known; nothing is predicted or sent. Raises a ``RecordError`` for an unusable
        request (its own replica dead-letters it)."""
        del time_ms  # only the own partitions' clock expires held labels (peers' may run ahead)
        if not self.routing(partition).admit(request):
            return  # a duplicate id: learned once already
        rid, x = request["id"], request["features"]
        label = request["label"] if request["label"] is not None else self.early.pop(rid, (None, 0))[0]
        if label is not None:
            self._learn_peer(rid, x, label)
        else:
            self._remember(self.peer_pending, rid, x, self.cfg.pending_limit)

    def on_label(self, request_id: str, label, time_ms: int = 0) -> list[Output]:
        """A late label: learn if its request is waiting here, else hold it for its request (the
        labels can run ahead of the requests, e.g. while a restarted host catches up). The host
        stops reading labels while more than ``early_limit`` are held (``labels_ahead``); a held
        label expires once the requests are ``label_horizon_ms`` past it (its request never came)."""
        validate_id(request_id)
        pending = self.pending.pop(request_id, None)
        if pending is not None:
            return self._learn(request_id, pending, label)
        peer_x = self.peer_pending.pop(request_id, None)
        if peer_x is not None:
            self._learn_peer(request_id, peer_x, label)
        else:
            self._remember(self.early, request_id, (label, time_ms), 10 * self.cfg.early_limit)
        return []

    @property
    def unreported(self) -> bool:
        """Whether it learned anything its last status does not count (the host reports it when idle)."""
        return self.n_learned > self.n_reported or self.n_peer_learned > self.n_peer_reported

    @property
    def labels_ahead(self) -> bool:
        return len(self.early) > self.cfg.early_limit

    def _expire_orphans(self) -> None:
        horizon = self.stream_time - self.cfg.tuning.label_horizon_ms
        while self.early and next(iter(self.early.values()))[1] < horizon:
            self.early.popitem(last=False)

    def _prediction(self, request: InferenceRequest, prediction, proba: dict, latency: float, partition: int) -> Output:
        value: Prediction = {
            "request_id": request["id"],
            "model": self.cfg.model,
            "host": self.cfg.host_id,
            "config_id": self.config_id,
            "prediction": None if prediction is None else int(prediction),
            "probabilities": {str(k): float(v) for k, v in proba.items()},
            "latency_ms": latency,
            "routing_version": self.routing(partition).version,
            "event_time": request["event_time"],
        }
        return Output(PREDICTIONS, "Prediction", value, request["id"])

    def _learn(self, rid: str, p: Pending, label) -> list[Output]:
        out = []
        correct = p.prediction == label
        self.accuracy.update(float(correct))
        self.n_correct += bool(correct)
        if self.errors.update(int(not correct)):
            self.error_drift = True
            log.info("%s: error rate up to %.3f after %d own labelled events (%d from peers)", self.cfg.host_id,
                     self.errors.error_rate, self.n_learned + 1, self.n_peer_learned)
        if p.shadow_prediction is not None and self.shadow_config is not None and p.shadow_run == self.shadow_runs:
            out.append(self._shadow_result(rid, p, p.shadow_prediction, label))
        self._guarded(self.production.learn_one, p.x, label)
        if self.shadow is not None:
            self._guarded(self.shadow.learn_one, p.x, label)
        self.sketch.add(p.x)
        self.n_learned += 1
        self.learned_digest = (self.learned_digest + id_digest(rid)) % 2**64
        self.learned_as_of = max(self.learned_as_of, p.event_time)
        self.window.add(self.n_learned, p.x, label, p.event_time)
        if evidence_due(self.n_learned, self.n_reported, self.cfg.status_every):
            out.append(self.status())
        return out

    def _learn_peer(self, rid: str, x: list[float], label) -> None:
        self._guarded(self.production.learn_one, x, label)
        if self.shadow is not None:
            self._guarded(self.shadow.learn_one, x, label)
        self.sketch.add(x)
        self.n_peer_learned += 1
        self.peer_digest = (self.peer_digest + id_digest(rid)) % 2**64

    def _shadow_result(self, rid: str, p: Pending, shadow_prediction: int, label) -> Output:
        """The pair's outcome on ``rid``, tagged with the configurations that predicted it (a
        pending request from a checkpoint without them: the current ones)."""
        assert self.shadow_config is not None
        value: ShadowResult = {
            "request_id": rid,
            "model": self.cfg.model,
            "host": self.cfg.host_id,
            "production_config_id": p.config_id or self.config_id,
            "shadow_config_id": p.shadow_config_id or config_id(self.shadow_config),
            "production_prediction": int(p.prediction) if p.prediction is not None else -1,
            "shadow_prediction": int(shadow_prediction),
            "label": int(label),
            "production_latency_ms": p.production_latency_ms,
            "shadow_latency_ms": p.shadow_latency_ms,
        }
        return Output(SHADOW_RESULTS, "ShadowResult", value, rid)

    def status(self) -> Output:
        """The ModelStatus record now (cumulative counters, so a lost one costs nothing)."""
        value: ModelStatus = {
            "host": self.cfg.host_id,
            "model": self.cfg.model,
            "config_id": self.config_id,
            "time": int(time.time() * 1000),
            "window_quality": self.accuracy.mean,
            "n_seen": self.n_learned,
            "error_drift": self.error_drift,
            "input_sketch": self.sketch.to_list(),
            "epsilon_spent": self.epsilon_spent,
            "n_correct": self.n_correct,
            "learned_digest": f"{self.learned_digest:016x}",
            "n_peer_learned": self.n_peer_learned,
            "peer_digest": f"{self.peer_digest:016x}",
            "as_of": self.learned_as_of,
        }
        self.error_drift = False
        self.n_reported, self.n_peer_reported = self.n_learned, self.n_peer_learned
        return Output(MODEL_STATUS, "ModelStatus", value, self.cfg.host_id)

    def _guarded(self, call, *args):
        """A model call that must not take the host down: an error is counted and logged, and
        the call answers None (a null prediction; no update), the same on every replay."""
        try:
            return call(*args)
        except Exception as exc:  # a model library's failure on one input
            self.model_errors += 1
            log.warning("%s: %s(%s) failed: %r", self.cfg.host_id, getattr(call, "__name__", "model"),
                        ", ".join(map(repr, args))[:200], exc)
            return None

    @staticmethod
    def _remember(store: OrderedDict, key: str, value, limit: int) -> None:
        store[key] = value
        if len(store) > limit:
            store.popitem(last=False)

    # -- control path -------------------------------------------------------------------------
    def on_trigger(self) -> None:
        """An HPO trigger (a drift): forget the windowed accuracy from before it."""
        self.accuracy.keep_last(self.cfg.tuning.keep_after_drift)

    def on_deployment(self, d: Deployment) -> bool:
        """Apply a deployment of this model; returns whether anything changed. Raises
        ``InvalidRecord`` for an unknown action or configuration."""
        action = Action.of(d)
        if action not in (Action.SHADOW_START, Action.PROMOTE, Action.REJECT):
            return False
        config = validated_config(self.family, d["config_json"])
        if action is Action.SHADOW_START:
            if self.shadow_config is not None and config_id(self.shadow_config) == config_id(config):
                return False
            # built at its first mirrored request: where it starts depends on the requests this
            # replica serves, not on when between two of them the deployment reached it
            self.shadow, self.shadow_config = None, config
            self.shadow_runs += 1
        elif action is Action.PROMOTE:
            if config_id(config) == config_id(self.config):
                return False
            if self.shadow is None or self.shadow_config is None or config_id(self.shadow_config) != config_id(config):
                self.shadow = self._warm(config)
            self.production, self.config, self.shadow, self.shadow_config = self.shadow, config, None, None
            self.config_id = config_id(config)
            self.sketch = InputSketch(self.family.memory(config))
            for _, x, _y in self.window.events:
                self.sketch.add(x)
        else:
            if self.shadow_config is None:
                return False
            self.shadow = self.shadow_config = None
        return True

    def _warm(self, config: dict) -> Classifier:
        """The candidate: production's model retuned to ``config`` (it keeps all it learned), or,
        where the family cannot change those hyperparameters in place, a new model trained on the
        local window."""
        if self.cfg.warm_start:
            retuned = self.family.retune(self.production, self.config, config)
            if retuned is not None:
                return retuned
        model = self.family.build(config, seed=self.cfg.seed)
        for _, x, y in self.window.events:
            model.learn_one(x, y)
        return model

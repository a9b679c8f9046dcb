"""A model host: one process per model replica (confluent-kafka).

K replicas of a model share one consumer group on ``inference.routed.<model>``, so each owns a
shard of that traffic: its local data. Every model receives every request; a host publishes a
production prediction only for those its model serves (exactly one per request: outputs and input
offsets are committed in one Kafka transaction, and a request id is never handled twice by the
same host) and evaluates itself on all of them (test-then-train), learns from labels (inline or
forwarded late), keeps its local window, runs its FHPO agent on ``hpo.triggers``, runs a shadow
candidate when told, and applies ``deployments``. Learning is at-least-once: a model's update
cannot be rolled back with an aborted transaction (a rebalance while a batch is open), so the
events of such a batch are learned again by whichever replica reprocesses them (at most ``BATCH``
per abort, logged as "transaction failed"). It publishes ``inference.predictions``, ``shadow.results``,
``model.status`` and ``hpo.metrics``.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agents import checkpoint
from agents import keys as host_keys
from fedrift import json_config
from fedrift.config import Settings
from fedrift.core.aggregation import PairwiseMasker
from fedrift.core.drift import ErrorDriftDetector
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.metrics import WindowedMean
from fedrift.core.models import FAMILIES, Classifier, clean_config, config_id
from fedrift.core.privacy import PrivacyLedger
from fedrift.core.routing import InputSketch, evidence_due
from fedrift.kafka_io import dead_letter, now_ms, producer_config, read_compacted
from fedrift.simulate import SimConfig
from fedrift.topics import (
    DEPLOYMENTS,
    HPO_KEYS,
    HPO_METRICS,
    HPO_TRIGGERS,
    MODEL_STATUS,
    PREDICTIONS,
    SHADOW_RESULTS,
    TopicCatalog,
    deployments_in_force,
)
from schemas import RecordError, codec, validate_features

log = logging.getLogger(__name__)
BATCH = 500  # messages handled per transaction
SERVED_MEMORY = 200_000  # request ids remembered for de-duplication
PENDING_MEMORY = 50_000  # requests waiting for a late label
ROUND_MEMORY = 100  # HPO rounds whose mask peers are kept for a later unmask request


def exc_text() -> str:
    import sys

    return str(sys.exc_info()[1])


@dataclass
class Pending:
    x: list[float]
    prediction: int | None
    shadow_prediction: int | None
    production_latency_ms: float
    shadow_latency_ms: float


class ModelHost:
    def __init__(self, settings: Settings, model: str, replica: int, fhpo: FhpoConfig | None = None) -> None:
        if model not in FAMILIES:
            raise ValueError(f"unknown model {model!r}; the pool has {sorted(FAMILIES)}")
        self.settings, self.model, self.replica = settings, model, replica
        self.host_id = f"{model}-{replica}"
        self.catalog = TopicCatalog.from_settings(settings)
        self.codec = codec()
        self.family = FAMILIES[model]
        self.config = dict(self.family.defaults)
        self.production: Classifier = self.family.build(self.config, seed=settings.seed)
        self.shadow: Classifier | None = None
        self.shadow_config: dict | None = None
        # windowed accuracy as in the simulator: the last 1000 events, cut to 300 at a drift trigger
        self.accuracy = WindowedMean(SimConfig.fedrift_window)
        self.errors = ErrorDriftDetector()
        self.error_drift = False
        self.sketch = InputSketch(self.family.memory(self.config))
        self.ledger = PrivacyLedger(settings.epsilon_budget)
        self.agent = FhpoAgent(self.family, self.host_id, self.ledger, fhpo, seed=settings.seed * 1000 + replica)
        self.keys = host_keys.load_or_create(settings.home / "hosts" / f"{settings.topic_prefix}{self.host_id}.key")
        self.peers = {f"{model}-{r}" for r in range(settings.replicas)} - {self.host_id}
        self.peer_keys: dict[str, bytes] = {}  # the other replicas' public keys, from hpo.keys
        self.round_peers: OrderedDict[str, list[str]] = OrderedDict()  # round -> peers its masks used
        self.served: OrderedDict[str, None] = OrderedDict()
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.hpo_results: queue.Queue = queue.Queue()
        self.hpo_thread: threading.Thread | None = None
        self.hpo_waiting: list[dict] = []
        self.n_learned = 0
        self.n_correct = 0
        self.n_reported = 0  # n_learned at the last ModelStatus
        self.position = 0
        self.running = True
        self.checkpoint_path = settings.home / "hosts" / f"{settings.topic_prefix}{self.host_id}.pkl"
        self.checkpointed_at = time.monotonic()
        bootstrap = settings.bootstrap
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{settings.topic_prefix}host.{model}",
                "client.id": self.host_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "log_level": 3,
            }
        )
        self.control = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{settings.topic_prefix}host.{self.host_id}.control",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "log_level": 3,
            }
        )
        self.producer = Producer(
            producer_config(bootstrap, **{"transactional.id": f"{settings.topic_prefix}host.{self.host_id}"})
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self, max_idle_s: float | None = None) -> None:
        self._restore()
        self.producer.init_transactions(30)
        self._publish_key()
        self.consumer.subscribe([self.catalog.routed(self.model)])
        self.control.subscribe(
            [self.catalog.name(HPO_TRIGGERS), self.catalog.name(DEPLOYMENTS), self.catalog.name(HPO_KEYS)]
        )
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        idle_since = time.monotonic()
        log.info("host %s serving %s", self.host_id, self.catalog.routed(self.model))
        try:
            while self.running:
                self._poll_control()
                msgs = self.consumer.consume(num_messages=BATCH, timeout=0.2)
                if not msgs:
                    if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                        break
                    continue
                idle_since = time.monotonic()
                self._process_batch(msgs)
        finally:
            self.consumer.close()
            self.control.close()
            self.producer.flush(10)
            self._checkpoint()

    def stop(self) -> None:
        self.running = False

    def _publish_key(self) -> None:
        """Publish this host's public key and read its peers' (later ones arrive on the control path)."""
        self.producer.begin_transaction()
        record = {"host": self.host_id, "model": self.model, "public_key": self.keys.public_bytes}
        self._send(HPO_KEYS, "AgentKey", {**record, "created_ms": now_ms()}, self.host_id)
        self.producer.commit_transaction(30)
        for value in read_compacted(self.settings.bootstrap, self.catalog.name(HPO_KEYS)).values():
            self._learn_key(value)

    def _learn_key(self, value: dict) -> None:
        if value.get("model") == self.model and value.get("host") in self.peers:
            self.peer_keys[value["host"]] = value["public_key"]

    def _masker(self, peers: list[str] | None = None) -> PairwiseMasker:
        """Pairwise mask secrets with the peers whose keys are known (or with ``peers`` only)."""
        public = {h: k for h, k in self.peer_keys.items() if peers is None or h in peers}
        context = f"{self.settings.topic_prefix}{self.model}".encode()
        return PairwiseMasker(self.host_id, self.keys.pair_secrets(self.host_id, public, context))

    def _restore(self) -> None:
        """Rebuild what must survive a restart from compacted topics: the ε already spent (from
        this host's last ModelStatus, with its scored/correct counters), the promoted configuration
        and a shadow still under test; then the learned state from the local checkpoint."""
        last = read_compacted(self.settings.bootstrap, self.catalog.name(MODEL_STATUS)).get(self.host_id)
        if last:
            self.ledger.restore(last["epsilon_spent"])
            # the controller differences these counters between reports: keep them monotonic
            self.n_learned, self.n_correct = last["n_seen"], last["n_correct"]
            self.n_reported = self.n_learned
            log.info("host %s restored ε spent %.2f", self.host_id, last["epsilon_spent"])
        for d in deployments_in_force(read_compacted(self.settings.bootstrap, self.catalog.name(DEPLOYMENTS)).values()):
            if d["model"] == self.model and d["action"] in ("PROMOTE", "SHADOW_START"):
                self._deploy(d)
        snapshot = checkpoint.load(self.checkpoint_path, config_id(self.config))
        if snapshot is not None:
            self.production, self.sketch, self.errors = snapshot.production, snapshot.sketch, snapshot.errors
            if self.shadow_config is not None and snapshot.shadow_config == self.shadow_config:
                self.shadow = snapshot.shadow
            for position, x, y in snapshot.window:
                self.agent.window.add(position, x, y)
            for v in snapshot.accuracy:
                self.accuracy.update(v)
            self.position = snapshot.position
            log.info("host %s restored its checkpoint (%d events in its window)", self.host_id, len(snapshot.window))

    def _checkpoint(self) -> None:
        checkpoint.save(
            self.checkpoint_path,
            checkpoint.HostSnapshot(
                config_id(self.config),
                self.production,
                shadow=self.shadow,
                shadow_config=self.shadow_config,
                window=list(self.agent.window.events),
                accuracy=list(self.accuracy.values),
                sketch=self.sketch,
                errors=self.errors,
                position=self.position,
            ),
        )
        self.checkpointed_at = time.monotonic()

    # -- data path -----------------------------------------------------------------------------
    def _process_batch(self, msgs) -> None:
        self._batch: list[str] = []  # request ids first served in this transaction
        self.producer.begin_transaction()
        try:
            for msg in msgs:
                if msg.error():
                    continue
                self._handle(msg)
            positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
            self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(30)
        except KafkaException:
            log.warning("transaction failed (%s); aborting and rewinding to the last commit", exc_text())
            self.producer.abort_transaction(30)
            for rid in self._batch:  # their predictions were aborted: serve them again
                self.served.pop(rid, None)
                self.pending.pop(rid, None)
            self._rewind()

    def _rewind(self) -> None:
        committed = self.consumer.committed(self.consumer.assignment(), timeout=10)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))

    def _send(self, base: str, record: str, value: dict, key: str) -> None:
        self.producer.produce(self.catalog.name(base), self.codec.encode(record, value), key.encode())

    def _handle(self, msg) -> None:
        try:
            _, routed = self.codec.decode(msg.value(), expect="RoutedRequest")
            request = routed["request"]
            if not routed["feedback"]:
                validate_features(request["features"])
        except RecordError as exc:
            topic, raw, headers = dead_letter(
                self.catalog, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), exc, self.host_id
            )
            self.producer.produce(topic, raw, msg.key(), headers=headers)
            return
        rid = request["id"]
        if routed["feedback"]:
            pending = self.pending.pop(rid, None)
            if pending is not None and request["label"] is not None:
                self._learn(rid, pending, request["label"])
            return
        if rid in self.served:
            return  # a redelivered request: its one production prediction (if ours) already exists
        self._remember(self.served, rid, None, SERVED_MEMORY)
        self._batch.append(rid)
        x = request["features"]
        t0 = time.perf_counter()
        proba = self.production.predict_proba_one(x)
        prediction = max(proba, key=proba.get) if proba else None
        latency = (time.perf_counter() - t0) * 1000
        shadow_pred, shadow_latency = None, 0.0
        if routed["shadow"] and self.shadow is not None:
            t1 = time.perf_counter()
            shadow_pred = self.shadow.predict_one(x)
            shadow_latency = (time.perf_counter() - t1) * 1000
        if routed["serve"]:
            self._send(
                PREDICTIONS,
                "Prediction",
                {
                    "request_id": rid,
                    "model": self.model,
                    "host": self.host_id,
                    "config_id": config_id(self.config),
                    "prediction": None if prediction is None else int(prediction),
                    "probabilities": {str(k): float(v) for k, v in proba.items()},
                    "latency_ms": latency,
                    "routing_version": routed["routing_version"],
                    "event_time": request["event_time"],
                },
                rid,
            )
        pending = Pending(x, prediction, shadow_pred, latency, shadow_latency)
        if request["label"] is not None:
            self._learn(rid, pending, request["label"])
        else:
            self._remember(self.pending, rid, pending, PENDING_MEMORY)

    @staticmethod
    def _remember(store: OrderedDict, key: str, value, limit: int) -> None:
        store[key] = value
        if len(store) > limit:
            store.popitem(last=False)

    def _learn(self, rid: str, p: Pending, label: int) -> None:
        self.position += 1
        correct = p.prediction == label
        self.accuracy.update(float(correct))
        self.n_correct += correct
        if self.errors.update(int(not correct)):
            self.error_drift = True
        if p.shadow_prediction is not None and self.shadow is not None:
            self._send(
                SHADOW_RESULTS,
                "ShadowResult",
                {
                    "request_id": rid,
                    "model": self.model,
                    "host": self.host_id,
                    "production_config_id": config_id(self.config),
                    "shadow_config_id": config_id(self.shadow_config),
                    "production_prediction": int(p.prediction) if p.prediction is not None else -1,
                    "shadow_prediction": int(p.shadow_prediction),
                    "label": int(label),
                    "production_latency_ms": p.production_latency_ms,
                    "shadow_latency_ms": p.shadow_latency_ms,
                },
                rid,
            )
        self.production.learn_one(p.x, label)
        if self.shadow is not None:
            self.shadow.learn_one(p.x, label)
        self.sketch.add(p.x)
        self.agent.observe(self.position, p.x, label)
        self.n_learned += 1
        if evidence_due(self.n_learned, self.n_reported, self.settings.status_every):
            self._status()

    def _status(self) -> None:
        self._send(
            MODEL_STATUS,
            "ModelStatus",
            {
                "host": self.host_id,
                "model": self.model,
                "config_id": config_id(self.config),
                "time": now_ms(),
                "window_quality": self.accuracy.mean,
                "n_seen": self.n_learned,
                "error_drift": self.error_drift,
                "input_sketch": self.sketch.to_list(),
                "epsilon_spent": self.ledger.max_loss,
                "n_correct": self.n_correct,
            },
            self.host_id,
        )
        self.error_drift = False
        self.n_reported = self.n_learned
        if time.monotonic() - self.checkpointed_at > self.settings.checkpoint_every_s:
            self._checkpoint()

    # -- control path: HPO triggers and deployments -------------------------------------------
    def _poll_control(self) -> None:
        msgs = [m for m in self.control.consume(num_messages=50, timeout=0) if not m.error()]
        finished = []
        while not self.hpo_results.empty():
            finished.append(self.hpo_results.get())
        if not msgs and not finished:
            self._start_hpo()
            return
        self.producer.begin_transaction()
        for trigger, outcome in finished:
            self._publish_round(trigger, outcome)
        for msg in msgs:
            try:
                name, value = self.codec.decode(msg.value())
            except RecordError as exc:
                log.warning("control record skipped (%s)", exc.reason)
                continue
            if name == "HpoTrigger" and (not value["models"] or self.model in value["models"]):
                self.hpo_waiting.append(value)
                self.accuracy.keep_last(SimConfig.keep_after_drift)
            elif name == "Deployment" and value["model"] == self.model:
                self._deploy(value)
            elif name == "UnmaskRequest" and value["model"] == self.model:
                self._unmask(value)
            elif name == "AgentKey":
                self._learn_key(value)
        self.producer.commit_transaction(30)
        self._start_hpo()

    def _unmask(self, request: dict) -> None:
        """Secure-aggregation dropout recovery: reveal only the masks shared with the dropped, and
        never so many that this host's own value would be exposed."""
        masker = self._masker(self.round_peers.get(request["round_id"]))
        for cid, dropped in request["dropped"].items():
            if self.host_id in dropped:
                continue
            answer = masker.recovery_share(dropped, request["round_id"], cid)
            if answer is None:
                log.warning(
                    "host %s refuses to unmask %s/%s: every peer is named dropped",
                    self.host_id,
                    request["round_id"],
                    cid,
                )
                continue
            share, covered = answer
            self._send(
                HPO_METRICS,
                "UnmaskShare",
                {
                    "round_id": request["round_id"],
                    "model": self.model,
                    "agent": self.host_id,
                    "config_id": cid,
                    "dropped": covered,
                    "share": share,
                },
                self.model,
            )

    def _start_hpo(self) -> None:
        """Run the next waiting round in a background thread, on a snapshot of the local window,
        so the host keeps serving while it optimises."""
        if not self.hpo_waiting or (self.hpo_thread is not None and self.hpo_thread.is_alive()):
            return
        trigger = self.hpo_waiting.pop(0)
        snapshot, config = list(self.agent.window.events), dict(self.config)

        def work() -> None:
            self.hpo_results.put((trigger, self.agent.run_round(trigger["round_id"], config, snapshot)))

        self.hpo_thread = threading.Thread(target=work, name=f"fhpo-{trigger['round_id']}", daemon=True)
        self.hpo_thread.start()

    def _publish_round(self, trigger: dict, outcome) -> None:
        round_id = trigger["round_id"]
        log.info("host %s round %s: %s, %d metric(s)", self.host_id, round_id, outcome.status, len(outcome.trials))
        masker = self._masker()
        self._remember(self.round_peers, round_id, masker.peers, ROUND_MEMORY)
        if not masker.peers:
            log.warning("host %s round %s: no peer keys yet, metrics go in the clear (ε-DP)", self.host_id, round_id)
        for tr in outcome.trials:
            weighted = tr.noised_quality * tr.slice_size
            masked = tr.shared and bool(masker.peers)
            shares = [masker.mask(round_id, tr.config_id, weighted)] if masked else []
            self._send(
                HPO_METRICS,
                "TrialMetric",
                {
                    "round_id": round_id,
                    "model": self.model,
                    "agent": self.host_id,
                    "config_id": tr.config_id,
                    "config_json": json_config.dumps(tr.config),
                    "noised_quality": math.nan if masked else tr.noised_quality,  # masked: only the masked share
                    "noised_latency_ms": tr.noised_latency_ms,
                    "slice_size": tr.slice_size,
                    "epsilon_spent": tr.epsilon_spent,
                    "masked_shares": shares,
                    "masked_with": masker.peers if masked else [],
                },
                self.model,
            )
        if outcome.status != "ok":
            self._status()  # says so: epsilon_spent at the budget, no metrics

    def _deploy(self, d: dict) -> None:
        action, config = d["action"], clean_config({**self.family.defaults, **json_config.loads(d["config_json"])})
        if action == "SHADOW_START":
            self.shadow, self.shadow_config = self._warm(config), config
        elif action == "PROMOTE":
            if self.shadow is None or config_id(self.shadow_config) != config_id(config):
                self.shadow = self._warm(config)
            self.production, self.config, self.shadow, self.shadow_config = self.shadow, config, None, None
            self.sketch = InputSketch(self.family.memory(config))
            for _, x, _y in self.agent.window.events:
                self.sketch.add(x)
        elif action == "REJECT":
            self.shadow = self.shadow_config = None
        log.info("host %s applied %s %s", self.host_id, action, config_id(config))

    def _warm(self, config: dict) -> Classifier:
        model = self.family.build(config, seed=self.settings.seed)
        for _, x, y in self.agent.window.events:
            model.learn_one(x, y)
        return model

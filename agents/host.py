"""A model host: one process per model replica, the Kafka shell around a ``ModelReplica``.

Replica ``r`` of ``K`` reads the partitions ``p`` with ``p % K == r`` of ``inference.requests``
and of ``inference.feedback`` (assigned, not subscribed: its state belongs to those partitions
and never moves in a rebalance). The two topics are co-partitioned: a label is keyed by its
request id, so with the same partitioner it lands in the partition number of its request. With
shared training (the default) it also reads the other partitions, only to learn from them
(``ModelReplica.on_peer_request``); their offsets are committed and checkpointed like its own.
Routing needs no router process: the controller's weights markers sit in the request partitions,
so every host computes the same serving model for each request (``fedrift.core.partition``).

Exactly-once, per request id: each batch of input records is handled in one Kafka transaction
with its outputs (predictions, shadow results, status, dead letters) and its input offsets
(read_committed downstream). The replica's state is checkpointed on local disk right after a
commit, with the offsets of that commit. On a restart, or after any failed transaction, the host
reloads that state, seeks back to its offsets and replays up to the offsets committed in Kafka
with outputs switched off, so no output is sent twice and every label is learned once. The
transactional id is per replica, so a restarted replica fences its zombie. Each transaction also
carries a ``HostProgress`` record with its input positions: the replay bound after a restart is
read from there as well as from the group's committed offsets, so it never rests on one fetch.
The control path (keys, HPO rounds, deployments) is ``agents.control``.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agents import checkpoint
from agents.alignment import TimeAligned
from agents.control import HostControl
from agents.federated import FederatedRounds
from agents.recovery import HostRecovery, by_partition
from fedrift.access import host_role
from fedrift.config import Settings
from fedrift.connection import connect
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.masking import SecureAggregation
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger
from fedrift.core.records import Output
from fedrift.core.replica import ModelReplica, ReplicaConfig
from fedrift.kafka_io import TXN_TIMEOUT_S, dead_letter, exit_if_hung, now_ms, producer_config, retrying
from fedrift.roster import own_identity, roster_of
from fedrift.topics import FEEDBACK, HOST_PROGRESS, REQUESTS, TopicCatalog
from schemas import RecordError, codec
from schemas.records import HostProgress

log = logging.getLogger(__name__)
MAX_FAILED_TRANSACTIONS = 5  # failed in a row on the same input: not transient, the process exits


class ModelHost(HostControl, HostRecovery):
    def __init__(self, settings: Settings, model: str, replica: int, fhpo: FhpoConfig | None = None) -> None:
        if model not in FAMILIES:
            raise ValueError(f"unknown model {model!r}; the pool has {sorted(FAMILIES)}")
        if not 0 <= replica < settings.replicas:
            raise ValueError(f"replica {replica} is outside 0..{settings.replicas - 1}")
        self.settings, self.model, self.replica = settings, model, replica
        self.cfg = ReplicaConfig.of(settings, model, replica)
        self.host_id = self.cfg.host_id
        self.catalog = TopicCatalog.from_settings(settings)
        self.conn = connect(settings, host_role(model))
        self.codec = codec()
        self.family = FAMILIES[model]
        self.requests, self.feedback = self.catalog.name(REQUESTS), self.catalog.name(FEEDBACK)
        self.dlq_owner = model == settings.models[0]  # one model's hosts dead-letter shared inputs
        name = f"{settings.topic_prefix}{self.host_id}"
        self.state_path = settings.home / "hosts" / f"{name}.state"
        agent = FhpoAgent(
            self.family,
            self.host_id,
            PrivacyLedger.model_share(settings.epsilon_budget, len(settings.models)),
            fhpo or settings.fhpo,
            seed=settings.seed * 1000 + replica,
        )
        roster = roster_of(settings)
        identity = own_identity(settings, self.host_id, roster)
        peers = {f"{model}-{r}" for r in range(settings.replicas)} - {self.host_id}
        secure = SecureAggregation(model, self.host_id, identity, peers, settings.replicas, agent.config.min_survivors,
                                   roster)
        self.rounds = FederatedRounds(agent, model, self.host_id, secure, settings.host_round_key_wait_s,
                                      self.state_path.with_suffix(".answers"))
        self.replica_state = ModelReplica(self.family, self.cfg)
        self.replay_until: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.running = True
        self.checkpointed_at = 0.0
        self.failed_in_a_row = 0
        self.ledger_recount = False  # a lost ledger waits for the replay to know its records' positions
        self.learned_in_replay = 0  # labels learned again while replaying (their window positions)
        self.n_partitions: int | None = None
        # request partitions merged by time
        self.aligned = TimeAligned(cap=10 * settings.host_batch, idle_ms=settings.host_align_idle_ms)

    # -- lifecycle -----------------------------------------------------------------------------
    def connect(self) -> None:
        conn, prefix = self.conn, self.settings.topic_prefix
        self.consumer = Consumer(
            conn.conf(**{
                "group.id": f"{prefix}host.{self.host_id}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",  # a checkpoint behind the log start: from the start
                "isolation.level": "read_committed",
                "log_level": 3,
            })
        )
        self.control = Consumer(conn.conf(**{"group.id": f"{prefix}host.{self.host_id}.control", "log_level": 3}))
        self.producer = Producer(
            producer_config(conn, **{"transactional.id": f"{prefix}host.{self.host_id}", "retry.backoff.ms": 20})
        )

    def run(self, max_idle_s: float | None = None, ready_file: str | None = None) -> None:
        self.connect()
        retrying(lambda: self._txn(self.producer.init_transactions), "init_transactions")
        self._follow_control()
        self.rounds.warm()
        self.recover()
        self._publish_key()
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        idle_since = time.monotonic()
        log.info("host %s serving partitions %s of %s", self.host_id, self.owned, self.requests)
        if ready_file:
            Path(ready_file).touch()
        try:
            while self.running:
                self._poll_control()
                msgs = self._in_time_order(self._next_batch())
                if not msgs:
                    quiet = time.monotonic() - idle_since > self.settings.host_idle_status_s
                    if quiet and self.replica_state.unreported:
                        self._control_transaction([self.replica_state.status()])  # the tail of a burst
                    if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                        break
                    continue
                idle_since = time.monotonic()
                self._transact(msgs)
                self._settle_lost_ledger()
            self._checkpoint()  # every batch either committed or was rolled back: state matches Kafka
            log.info("host %s: %d request(s) handled after a newer one (time order inverted)", self.host_id,
                     self.aligned.inversions)
        finally:
            self.rounds.close()
            self.consumer.close()
            self.control.close()
            self.producer.flush(10)

    def _next_batch(self) -> list:
        """Up to ``host_batch`` records: wait up to 50 ms for the first, then at most ``host_linger_s`` for
        more. Each batch is one transaction (a few ms of broker round trips), so lingering a little
        keeps transactions few under load while a quiet stream is not held back to fill a batch."""
        msgs = self.consumer.consume(num_messages=1, timeout=0.05)
        room = self.settings.host_batch - 1
        if not msgs or room < 1:
            return msgs
        return msgs + self.consumer.consume(num_messages=room, timeout=self.settings.host_linger_s)

    def _in_time_order(self, fetched: list) -> list:
        """The usable records of a fetch merged across partitions in time order
        (``agents.alignment``): the request partitions hold each other back, and a label waits
        for the requests older than it (its own among them), so it is not committed before them."""
        self.aligned.add(((m.topic(), m.partition()), self._stamp(m), m) for m in self._usable(fetched))
        return self.aligned.take(self.settings.host_batch, drained=len(fetched) < self.settings.host_batch)

    def _stamp(self, msg) -> int | None:
        """A record's time for the merge; None for a routing-weights marker, which the controller
        stamps with its own clock and which only has a place in its partition."""
        return None if self.codec.name_of(msg.value()) == "RoutingWeights" else msg.timestamp()[1]

    @staticmethod
    def _usable(msgs: list) -> list:
        """The records of a batch; consumer errors (they carry no record) are logged, not hidden."""
        for m in msgs:
            if m.error() is not None:
                log.warning("consumer: %s", m.error())
        return [m for m in msgs if m.error() is None]

    def stop(self) -> None:
        self.running = False

    def _checkpoint(self) -> None:
        state = checkpoint.HostState(self.replica_state, self.rounds.agent.ledger, dict(self.positions),
                                     self.rounds.memory(), self.n_partitions)
        checkpoint.save(self.state_path, state)
        self.checkpointed_at = time.monotonic()

    # -- data path -----------------------------------------------------------------------------
    def _transact(self, msgs) -> None:
        """One batch, one transaction; on failure, back to the last checkpoint (fatal: exit)."""
        try:
            self.producer.begin_transaction()
            for msg in msgs:
                self._handle(msg)
            committed = checkpoint.commit_positions(self.positions, self.replay_until)
            offsets = [TopicPartition(t, p, o) for (t, p), o in committed.items()]
            self._send([self._progress(offsets)])
            # outputs delivered first: adding offsets while partitions are still being added to the
            # transaction is refused by the broker and retried after a backoff (~100 ms a batch)
            self.producer.flush(TXN_TIMEOUT_S)
            self._txn(self.producer.send_offsets_to_transaction, offsets, self.consumer.consumer_group_metadata())
            self._txn(self.producer.commit_transaction)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= MAX_FAILED_TRANSACTIONS:
                raise RuntimeError(
                    f"host {self.host_id}: {self.failed_in_a_row} transactions in a row failed ({exc}) at "
                    f"{by_partition(self.positions)}; exiting (the supervisor restarts it and reports a crash loop)"
                ) from exc
            log.warning("host %s: transaction failed (%s); recovering from the checkpoint", self.host_id, exc)
            retrying(lambda: self._txn(self.producer.abort_transaction), "abort_transaction")
            self.recover()
            return
        self.failed_in_a_row = 0
        if time.monotonic() - self.checkpointed_at >= self.settings.checkpoint_every_s:
            self._checkpoint()
        self._pace_labels()

    def _progress(self, offsets: list[TopicPartition]) -> Output:
        """The batch's input positions, committed with its outputs (what a restart replays up to)."""
        record: HostProgress = {
            "host": self.host_id,
            "time": now_ms(),
            "offsets": [{"topic": tp.topic, "partition": tp.partition, "offset": tp.offset} for tp in offsets],
        }
        return Output(HOST_PROGRESS, "HostProgress", record, self.host_id)

    @staticmethod
    def _txn(call, *args):
        """A transactional producer call with its timeout, ending the process if it hangs past it."""
        with exit_if_hung():
            return call(*args, TXN_TIMEOUT_S)

    def _pace_labels(self) -> None:
        """Stop reading labels while too many are ahead of their requests; read again at half."""
        rep = self.replica_state
        if rep.labels_ahead and not self.labels_paused:
            self.consumer.pause(self.feedback_partitions)
            self.labels_paused = True
            log.info("host %s: %d labels ahead of their requests; labels paused", self.host_id, len(rep.early))
        elif self.labels_paused and len(rep.early) <= rep.cfg.early_limit // 2:
            self.consumer.resume(self.feedback_partitions)
            self.labels_paused = False

    def _handle(self, msg) -> None:
        key = (msg.topic(), msg.partition())
        self.positions[key] = msg.offset() + 1
        replaying = msg.offset() < self.replay_until.get(key, -1)
        own = msg.partition() in self.owned
        rep = self.replica_state
        outputs: list[Output] = []
        try:
            if msg.topic() == self.requests:
                name, value = self.codec.decode(msg.value(), expect=("InferenceRequest", "RoutingWeights"))
                if name == "RoutingWeights":
                    if own:  # a peer partition's routing is its own replica's
                        rep.on_weights(msg.partition(), value)
                    return
                if own:
                    outputs = rep.on_request(msg.partition(), value, msg.timestamp()[1])
                else:
                    rep.on_peer_request(msg.partition(), value, msg.timestamp()[1])
            else:
                _, value = self.codec.decode(msg.value(), expect="Feedback")
                outputs = rep.on_label(value["id"], value["label"], msg.timestamp()[1])
        except RecordError as exc:
            # the shared inputs are dead-lettered once: by the pool's first model's replica that serves them
            if self.dlq_owner and own and not replaying:
                self._dead_letter(msg, exc)
            return
        if not replaying:
            self._send(outputs)
        else:
            self.learned_in_replay = rep.n_learned

    def _dead_letter(self, msg, exc: Exception) -> None:
        topic, raw, headers = dead_letter(
            self.catalog, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), exc, self.host_id
        )
        self.producer.produce(topic, raw, msg.key(), headers=[*headers])

    def _send(self, outputs: list[Output]) -> None:
        for o in outputs:
            self.producer.produce(self.catalog.name(o.topic), self.codec.encode(o.record, o.value), o.key.encode())


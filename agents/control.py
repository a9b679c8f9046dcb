"""A model host's control path: its key, HPO triggers and rounds, unmask requests, deployments.

Control records arrive on their own consumer, read from "now" (what is in force already comes
from the compacted topics at start), and are applied between data batches; what the host says
in answer (round metrics, shares, status) leaves in a transaction of its own. A record that cannot
be used is refused with its reason and dead-lettered by exactly one host.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agents.federated import FederatedRounds
from fedrift.connection import Connection
from fedrift.core.drift_stage import validate_trigger
from fedrift.core.records import Output
from fedrift.core.replica import ModelReplica
from fedrift.kafka_io import dead_letter, now_ms, read_compacted, retrying
from fedrift.topics import DEPLOYMENTS, HPO_KEYS, HPO_TRIGGERS, TopicCatalog
from schemas import InvalidRecord, RecordError
from schemas.records import AgentKey, Deployment

if TYPE_CHECKING:
    from fedrift.config import Settings
    from schemas.codec import Codec

log = logging.getLogger(__name__)
CONTROL_RECORDS = ("HpoTrigger", "UnmaskRequest", "Deployment", "AgentKey", "RoundKeys")


class HostControl:
    """The control half of ``agents.host.ModelHost`` (which provides these attributes)."""

    settings: Settings
    catalog: TopicCatalog
    conn: Connection
    codec: Codec
    model: str
    replica: int
    host_id: str
    dlq_owner: bool
    control: Consumer
    producer: Producer
    rounds: FederatedRounds
    replica_state: ModelReplica

    def _send(self, outputs: list[Output]) -> None:
        raise NotImplementedError

    def _checkpoint(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _txn(call, *args):
        raise NotImplementedError

    def _follow_control(self) -> None:
        """Read control records from now on; what is in force already comes from compacted topics."""
        topics = [self.catalog.name(t) for t in (HPO_TRIGGERS, DEPLOYMENTS, HPO_KEYS)]
        ends = []
        for topic in topics:
            md = retrying(lambda t=topic: self.control.list_topics(t, timeout=10), f"metadata of {topic}")
            for p in md.topics[topic].partitions:
                tp = TopicPartition(topic, p)
                _, hi = retrying(lambda tp=tp: self.control.get_watermark_offsets(tp, timeout=10), "watermarks")
                ends.append(TopicPartition(topic, p, hi))
        self.control.assign(ends)

    def _publish_key(self) -> None:
        """Publish this host's signed keys and read its peers' (later ones arrive on the control path)."""
        record: AgentKey = self.rounds.secure.key_record(now_ms())
        self._control_transaction([Output(HPO_KEYS, "AgentKey", record, self.host_id)])
        for value in read_compacted(self.conn, self.catalog.name(HPO_KEYS)).values():
            if "signing_key" in value:  # AgentKey (round keys of past rounds are of no use now)
                self.rounds.secure.learn_key(value)

    def _control_transaction(self, outputs: list[Output], letters: Sequence[tuple] = ()) -> None:
        def attempt() -> None:
            self.producer.begin_transaction()
            try:
                self._send(outputs)
                for topic, raw, key, headers in letters:
                    self.producer.produce(topic, raw, key, headers=[*headers])
                self._txn(self.producer.commit_transaction)
            except KafkaException:
                self._txn(self.producer.abort_transaction)
                raise

        retrying(attempt, "control transaction")

    def _poll_control(self) -> None:
        outputs, letters = [], []
        if self.rounds.collect():
            self._checkpoint()  # the round's spend reaches disk while it waits for its peers' keys
        for trigger, outcome in self.rounds.finished():
            outputs += self.rounds.metrics(trigger, outcome)
            self.replica_state.epsilon_spent = self.rounds.agent.ledger.max_loss
            if outcome.status != "ok":
                outputs.append(self.replica_state.status())  # says so: epsilon_spent at the budget
            # the ledger reaches disk before its metrics leave: a crash in between over-counts ε
            # instead of forgetting it (the replica's state is the last committed batch's here)
            self._checkpoint()
        round_records = 0  # triggers and unmask requests: what joins or answers a round
        for msg in self.control.consume(num_messages=50, timeout=0):
            if msg.error():
                continue
            round_records += msg.topic() == self.catalog.name(HPO_TRIGGERS)
            try:
                outputs += self._control_record(msg)
            except RecordError as exc:
                log.warning("host %s: control record refused (%s)", self.host_id, exc.reason)
                if self._owns_control_dlq(msg):
                    topic, raw, headers = dead_letter(
                        self.catalog, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), exc,
                        self.host_id,
                    )
                    letters.append((topic, raw, msg.key(), headers))
        if round_records:
            self._checkpoint()  # rounds joined, requests seen and answers reach disk before the answers leave
        if outputs or letters:
            self._control_transaction(outputs, letters)
        self.rounds.start_next(self.replica_state.window, dict(self.replica_state.config))

    def _owns_control_dlq(self, msg) -> bool:
        """One host dead-letters each unusable control record: replica 0 of the model a deployment
        names; for a refused key, the first replica of its model other than the key's own host;
        replica 0 of the pool's first model for anything else."""
        try:
            name, value = self.codec.decode(msg.value())
        except RecordError:
            name, value = None, {}
        if name in ("AgentKey", "RoundKeys"):  # refused only by the hosts of its model
            sender = value["host"] if name == "AgentKey" else value["agent"]
            return value["model"] == self.model and self.replica == (1 if sender == f"{self.model}-0" else 0)
        if self.replica != 0:
            return False
        if msg.topic() == self.catalog.name(DEPLOYMENTS) and name is not None:
            return value["model"] == self.model
        return self.dlq_owner

    def _control_record(self, msg) -> list[Output]:
        """Apply one control record; raises ``RecordError`` for one that cannot be used."""
        name, value = self.codec.decode(msg.value(), expect=CONTROL_RECORDS)
        if name == "HpoTrigger":
            validate_trigger(value)
            if not value["models"] or self.model in value["models"]:
                self.replica_state.on_trigger()
                return self.rounds.on_trigger(value)
        elif name == "Deployment" and value["model"] == self.model:
            if self.replica_state.on_deployment(value):
                log.info("host %s applied %s %s", self.host_id, value["action"], value["config_id"])
        elif name == "UnmaskRequest" and value["model"] == self.model:
            return self.rounds.unmask(value)
        elif name in ("AgentKey", "RoundKeys"):
            refused = self.rounds.secure.learn_key(value) if name == "AgentKey" else self.rounds.on_round_keys(value)
            if refused:
                raise InvalidRecord(refused)
        return []

    def _deploy(self, d: Deployment) -> None:
        """Re-apply a deployment in force at start; an unusable one is skipped."""
        try:
            self.replica_state.on_deployment(d)
        except RecordError as exc:
            log.warning("host %s: deployment in force refused (%s)", self.host_id, exc.reason)

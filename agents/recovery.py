"""A model host's recovery: where each input partition is read from after a start or a failed
transaction, and how far the host replays silently (``agents.host`` provides the attributes).

The replay bound is what the last committed transaction read up to, taken from the group's
committed offsets and the host's own ``HostProgress`` record, the later of the two per partition
(``agents.checkpoint.replay_bounds``): one too low and the host would answer that stretch twice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from agents import checkpoint
from agents.alignment import TimeAligned
from agents.federated import FederatedRounds
from fedrift.config import Settings
from fedrift.connection import Connection
from fedrift.core.models import ModelFamily
from fedrift.core.privacy import ALL
from fedrift.core.replica import ModelReplica, ReplicaConfig
from fedrift.kafka_io import read_compacted, retrying
from fedrift.topics import DEPLOYMENTS, HOST_PROGRESS, TopicCatalog, deployments_in_force
from schemas.records import Deployment

log = logging.getLogger(__name__)


class HostRecovery:
    """The recovery half of ``agents.host.ModelHost``."""

    settings: Settings
    cfg: ReplicaConfig
    catalog: TopicCatalog
    conn: Connection
    model: str
    replica: int
    host_id: str
    family: ModelFamily
    requests: str
    feedback: str
    state_path: Path
    consumer: Consumer
    rounds: FederatedRounds
    replica_state: ModelReplica
    aligned: TimeAligned
    replay_until: dict[tuple[str, int], int]
    positions: dict[tuple[str, int], int]
    n_partitions: int | None
    ledger_recount: bool
    learned_in_replay: int
    labels_paused: bool
    owned: list[int]
    feedback_partitions: list[TopicPartition]

    def _deploy(self, d: Deployment) -> None:
        raise NotImplementedError

    def recover(self) -> None:
        """Load the last checkpoint (or start fresh from the beginning of every input partition),
        re-apply the deployments in force, and replay up to the committed offsets silently."""
        refused = False
        try:
            state = checkpoint.load(self.state_path)
        except checkpoint.CheckpointRefused as exc:
            log.error("%s; host %s starts from the stream, its past records' ε budget counted as spent",
                      exc, self.host_id)  # see _settle_lost_ledger
            state, refused = None, True
        if state is not None:
            checkpoint.check_topology(state.replica.cfg, self.cfg, self.state_path)
            state.replica.cfg = self.cfg  # other settings (cadences, limits) may change across restarts
            self.replica_state, offsets = state.replica, state.offsets
            self.rounds.agent.ledger = state.ledger
            self.rounds.restore(state.rounds)
            log.info("host %s restored its checkpoint (%d labels learned)", self.host_id, state.replica.n_learned)
        else:
            self.replica_state, offsets = ModelReplica(self.family, self.cfg), {}
        partitions = self._inputs()
        if state is not None and state.n_partitions not in (None, self.n_partitions):
            raise checkpoint.TopologyChanged(
                f"host {self.host_id}: {self.requests} has {self.n_partitions} partitions, its checkpoint "
                f"{self.state_path} was made with {state.n_partitions}: labels would hash elsewhere than their requests"
            )
        for d in deployments_in_force(read_compacted(self.conn, self.catalog.name(DEPLOYMENTS)).values()):
            if d["model"] == self.model:
                self._deploy(d)
        self.replay_until = self._replay_bounds(partitions, offsets)
        if checkpoint.ledger_lost(refused, state is not None, self.replay_until):
            self.rounds.agent.ledger.exhaust_before(ALL)  # nothing may be scored until the replay ends
            self.ledger_recount = True
        log.info(
            "host %s resumes at %s and replays silently up to %s",
            self.host_id,
            by_partition(offsets),
            by_partition(self.replay_until),
        )
        start = [TopicPartition(tp.topic, tp.partition, self._start_offset(tp, offsets, state is not None))
                 for tp in partitions]
        if not self.settings.shared_training:
            self.replica_state.peer_pending.clear()  # peers' requests it will never see the labels of
        self.consumer.assign(start)
        self.consumer.resume(start)  # a partition paused before stays paused across assign()
        self.aligned.clear()  # what it held is read again from ``start``
        self.aligned.watch((tp.topic, tp.partition) for tp in partitions if tp.topic == self.requests)
        self.labels_paused = False
        self._warn_if_truncated(start)
        self.positions = {(tp.topic, tp.partition): tp.offset for tp in start}

    def _start_offset(self, tp: TopicPartition, offsets: dict[tuple[str, int], int], restored: bool) -> int:
        """Where to read ``tp`` from: the checkpoint's position; a host starting fresh reads
        everything. A peer partition its checkpoint does not know (shared training switched on
        since) is read from its end: its history was learned by no one here, and reading it from
        the start would learn what an earlier run already did twice (beyond the remembered ids)."""
        if (tp.topic, tp.partition) in offsets or not restored or tp.partition in self.owned:
            return offsets.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        log.warning("host %s: %s/%d is new to its checkpoint (shared training switched on): learning it from "
                    "its end", self.host_id, tp.topic, tp.partition)
        return OFFSET_END

    def _replay_bounds(
        self, partitions: list[TopicPartition], offsets: dict[tuple[str, int], int], within_s: float = 120.0
    ) -> dict[tuple[str, int], int]:
        """What the last committed transaction read up to: the host's progress record (committed
        with that transaction's outputs; ``init_transactions`` has decided any transaction left
        open) and the group's committed offsets, the later of the two per partition. Asked again
        while that is behind the checkpoint."""
        deadline = time.monotonic() + within_s
        while True:
            fetched = retrying(lambda: self.consumer.committed(partitions, timeout=10), "committed offsets")
            failed = [tp for tp in fetched if tp.error is not None]
            try:
                if failed:
                    raise checkpoint.StaleCommit(f"offset fetch failed for {failed}")
                committed = {(tp.topic, tp.partition): tp.offset for tp in fetched}
                progress = self._committed_progress()
                if any(o > committed.get(tp, -1) for tp, o in progress.items()):
                    log.warning(
                        "host %s: committed offsets %s behind the progress record %s",
                        self.host_id,
                        by_partition(committed),
                        by_partition(progress),
                    )
                return checkpoint.replay_bounds(offsets, checkpoint.later(committed, progress))
            except (checkpoint.StaleCommit, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("host %s: %s; asking again", self.host_id, exc)
                time.sleep(1.0)

    def _committed_progress(self) -> dict[tuple[str, int], int]:
        topic = self.catalog.name(HOST_PROGRESS)
        latest = read_compacted(self.conn, topic, complete=True)
        mine = latest.get(self.host_id) or {"offsets": []}
        return {(o["topic"], o["partition"]): o["offset"] for o in mine["offsets"]}

    def _warn_if_truncated(self, start: list[TopicPartition]) -> None:
        """Say so when retention deleted records this host had not read (it resumes at the log
        start: those requests are not answered, their labels not learned)."""
        for tp in start:
            if tp.offset < 0:
                continue
            low, _ = retrying(lambda tp=tp: self.consumer.get_watermark_offsets(tp, timeout=10), "watermarks")
            if low > tp.offset:
                log.error("host %s: %s/%d offsets %d..%d were deleted by retention before this host read them",
                          self.host_id, tp.topic, tp.partition, tp.offset, low - 1)

    def _inputs(self) -> list[TopicPartition]:
        def count(topic: str) -> int:
            md = retrying(lambda: self.consumer.list_topics(topic, timeout=10), f"metadata of {topic}")
            parts = md.topics[topic].partitions
            if not parts:
                raise KafkaException(f"topic {topic} has no partitions (does it exist?)")
            return len(parts)

        n = self.n_partitions = count(self.requests)
        if count(self.feedback) != n:
            raise KafkaException(f"{self.feedback} must have as many partitions as {self.requests} ({n})")
        self.owned = [p for p in range(n) if p % self.settings.replicas == self.replica]
        read = list(range(n)) if self.settings.shared_training else self.owned
        self.feedback_partitions = [TopicPartition(self.feedback, p) for p in read]
        return [TopicPartition(self.requests, p) for p in read] + self.feedback_partitions

    def _settle_lost_ledger(self) -> None:
        """Once the replay after a lost ledger is over, the records learned again hold window
        positions up to ``learned_in_replay``: their budget counts as spent, later ones are new."""
        if self.ledger_recount and all(self.positions.get(tp, -1) >= o for tp, o in self.replay_until.items()):
            n = self.learned_in_replay
            self.rounds.agent.ledger.exhaust_before(n + 1)
            self.ledger_recount = False
            log.warning("host %s replayed its history without its ε ledger: positions up to %d count as spent",
                        self.host_id, n)


def by_partition(offsets: dict[tuple[str, int], int]) -> str:
    return ", ".join(f"{t.rsplit('.', 1)[-1]}/{p}={o}" for (t, p), o in sorted(offsets.items())) or "nothing"

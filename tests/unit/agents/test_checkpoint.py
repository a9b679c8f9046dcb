import pickle

import pytest
from confluent_kafka import OFFSET_BEGINNING

from agents.checkpoint import (
    CheckpointRefused,
    HostState,
    StaleCommit,
    commit_positions,
    key_path,
    later,
    load,
    replay_bounds,
    save,
)
from fedrift import datasets
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger
from fedrift.core.replica import ModelReplica, ReplicaConfig


def _trained(n: int) -> ModelReplica:
    rep = ModelReplica(FAMILIES["arf"], ReplicaConfig(pool=("arf",), model="arf"))
    for i, (x, y) in enumerate(datasets.synthetic("sea", n, seed=1)):
        rep.on_request(0, {"id": f"r{i}", "event_time": 0, "features": x, "label": y})
    return rep


def test_a_replica_comes_back_predicting_the_same_with_its_offsets(tmp_path):
    rep = _trained(1000)
    path = tmp_path / "hosts" / "arf-0.state"
    save(path, HostState(rep, PrivacyLedger(10.0), {("req", 0): 1000}))
    back = load(path)
    assert back is not None and back.offsets == {("req", 0): 1000} and back.replica.n_learned == 1000
    rows = list(datasets.synthetic("sea", 200, seed=9))
    assert [back.replica.production.predict_one(x) for x, _ in rows] == [rep.production.predict_one(x) for x, _ in rows]
    assert not list(path.parent.glob("*.tmp"))  # written atomically
    assert {oct(p.stat().st_mode & 0o777) for p in path.parent.iterdir()} == {"0o600"}


class Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran at load')",))


def test_a_tampered_torn_or_missing_checkpoint_is_not_loaded(tmp_path):
    path = tmp_path / "hosts" / "x.state"
    save(path, HostState("r", None))
    data = path.read_bytes()
    path.write_bytes(data[:32] + pickle.dumps(Boom()))  # a forged body under the old tag
    with pytest.raises(CheckpointRefused, match="fails authentication"):
        load(path)  # refused before unpickling: nothing ran
    path.write_bytes(data[:-3])
    with pytest.raises(CheckpointRefused):
        load(path)
    assert load(tmp_path / "hosts" / "missing.state") is None


def test_the_key_lives_apart_from_the_checkpoints_and_a_new_key_refuses_the_old_file(tmp_path):
    path = tmp_path / "hosts" / "x.state"
    save(path, HostState("r", None))
    key = key_path(path)
    assert key.parent == tmp_path / "keys" and not list(path.parent.glob("*key*"))
    assert oct(key.stat().st_mode & 0o777) == "0o600" and oct(key.parent.stat().st_mode & 0o777) == "0o700"
    key.unlink()  # deleting the key does not make the old state loadable under a fresh one
    with pytest.raises(CheckpointRefused):
        load(path)


def test_a_host_refuses_a_checkpoint_made_with_another_pool_or_replica_count():
    import pytest

    from agents.checkpoint import TopologyChanged, check_topology

    saved = ReplicaConfig(pool=("a", "b"), model="a", replicas=2)
    check_topology(saved, ReplicaConfig(pool=("a", "b"), model="a", replicas=2, status_every=7), "x")
    with pytest.raises(TopologyChanged, match="2 replicas, now"):
        check_topology(saved, ReplicaConfig(pool=("a", "b"), model="a", replicas=3), "x")
    with pytest.raises(TopologyChanged, match="pool"):
        check_topology(saved, ReplicaConfig(pool=("a",), model="a", replicas=2), "x")


def test_replay_bounds_refuse_committed_offsets_behind_or_missing_for_a_checkpointed_partition():
    ckpt = {("req", 0): 100, ("req", 1): 50, ("fb", 0): OFFSET_BEGINNING}
    assert replay_bounds(ckpt, {("req", 0): 100, ("req", 1): 70, ("fb", 0): -1001}) == {("req", 0): 100, ("req", 1): 70}
    for stale in ({("req", 0): 99, ("req", 1): 70}, {("req", 1): 70}, {("req", 0): -1001, ("req", 1): 70}):
        with pytest.raises(StaleCommit, match="req/0"):
            replay_bounds(ckpt, stale)
    assert replay_bounds({}, {("req", 0): 7}) == {("req", 0): 7}  # a fresh host: whatever Kafka has


def test_commits_never_go_below_the_replay_bound_nor_name_unread_partitions():
    positions = {("req", 0): 951, ("req", 1): OFFSET_BEGINNING, ("req", 2): 1300, ("fb", 0): OFFSET_BEGINNING}
    bound = {("req", 0): 1146, ("req", 1): 700, ("req", 2): 1200}
    assert commit_positions(positions, bound) == {("req", 0): 1146, ("req", 1): 700, ("req", 2): 1300}
    assert commit_positions(positions, {}) == {("req", 0): 951, ("req", 2): 1300}


def test_the_replay_bound_is_the_later_of_the_group_offsets_and_the_progress_record():
    committed = {("req", 0): 958, ("req", 1): -1001}
    progress = {("req", 0): 1146, ("req", 1): 40}
    assert later(committed, progress) == {("req", 0): 1146, ("req", 1): 40}
    assert later(progress, committed) == later(committed, progress)

"""Shared training: a replica learns the partitions other replicas serve, without scoring them."""

import json
import pickle

import pytest

from fedrift import datasets
from fedrift.core.lifecycle import Action, new_deployment
from fedrift.core.models import FAMILIES, config_id
from fedrift.core.replica import ModelReplica, ReplicaConfig, id_digest
from schemas import FeatureCountMismatch

POOL = ("pa", "linear")


def _replica(model: str = "pa") -> ModelReplica:
    return ModelReplica(FAMILIES[model], ReplicaConfig(pool=POOL, model=model, status_every=50))


def _requests(n: int, seed: int = 3):
    for i, (x, y) in enumerate(datasets.synthetic("sea", n, seed=seed)):
        yield {"id": f"r{i}", "event_time": i, "features": x, "label": y}


def test_peer_requests_train_the_model_but_are_not_scored_reported_or_windowed():
    rep = _replica()
    for req in _requests(300):
        assert rep.on_peer_request(1, req) is None
    assert (rep.n_learned, rep.n_correct, len(rep.window.events)) == (0, 0, 0)
    assert rep.n_peer_learned == 300
    assert rep.peer_digest == sum(id_digest(f"r{i}") for i in range(300)) % 2**64
    assert rep.unreported and rep.status().value["n_peer_learned"] == 300 and not rep.unreported


def test_a_peer_trained_model_predicts_as_one_trained_on_its_own_partition():
    """Learning through the peer path is the same learning: same events, same model."""
    own, peer = _replica(), _replica()
    for req in _requests(500):
        own.on_request(0, req)
        peer.on_peer_request(0, req)
    probe = [[0.3 * k, 1.0 + k, 2.0] for k in range(10)]
    assert [own.production.predict_proba_one(x) for x in probe] == [peer.production.predict_proba_one(x) for x in probe]


def test_late_early_and_duplicate_peer_labels_are_learned_once():
    rep = _replica()
    first, second, third = list(_requests(3))
    rep.on_label("r0", first["label"])  # label ahead of its request
    rep.on_peer_request(2, {**first, "label": None})
    rep.on_peer_request(2, {**second, "label": None})
    assert rep.n_peer_learned == 1 and "r1" in rep.peer_pending
    assert rep.on_label("r1", second["label"]) == []
    rep.on_label("r1", second["label"])  # repeated label: held as early, never learned twice
    rep.on_peer_request(2, third)
    rep.on_peer_request(2, third)  # a duplicate request id
    assert rep.n_peer_learned == 3 and rep.n_learned == 0
    assert rep.peer_digest == sum(id_digest(f"r{i}") for i in range(3)) % 2**64


def test_an_unusable_peer_request_is_refused_and_learns_nothing():
    rep = _replica()
    rep.on_peer_request(1, next(_requests(1)))
    with pytest.raises(FeatureCountMismatch):
        rep.on_peer_request(1, {"id": "bad", "event_time": 1, "features": [1.0], "label": 0})
    assert rep.n_peer_learned == 1


def test_the_shadow_learns_peer_requests_too():
    rep = _replica("linear")
    for req in _requests(200):
        rep.on_request(0, req)
    config = {"lr": 0.05, "l2": 0.0}
    rep.on_deployment(new_deployment("linear", Action.SHADOW_START, config_id(config), 0, "test", {},
                                     config_json=json.dumps(config)))
    assert rep.shadow_config == config
    own = iter(_requests(200, seed=5))
    while rep.shadow is None:  # built at its first mirrored own request
        req = next(own)
        rep.on_request(0, {**req, "id": "o" + req["id"]})
    before = pickle.dumps(rep.shadow)
    for req in _requests(50, seed=9):
        rep.on_peer_request(1, {**req, "id": "p" + req["id"]})
    assert pickle.dumps(rep.shadow) != before


def test_peer_state_survives_a_checkpoint_and_an_old_checkpoint_loads():
    rep = _replica()
    reqs = list(_requests(20))
    for req in reqs[:10]:
        rep.on_peer_request(1, req)
    rep.on_peer_request(1, {**reqs[10], "label": None})
    restored = pickle.loads(pickle.dumps(rep))
    restored.on_label("r10", reqs[10]["label"])
    assert (restored.n_peer_learned, restored.peer_digest) == (11, sum(id_digest(f"r{i}") for i in range(11)) % 2**64)
    old = _replica()
    state = old.__getstate__()
    for name in ("peer_pending", "n_peer_learned", "n_peer_reported", "peer_digest"):
        del state[name]
    fresh = ModelReplica.__new__(ModelReplica)
    fresh.__setstate__(state)
    fresh.on_peer_request(1, reqs[0])
    assert fresh.n_peer_learned == 1


def test_a_peer_partition_running_ahead_does_not_expire_the_own_partitions_labels():
    rep = _replica()
    first, second = list(_requests(2))
    rep.on_request(0, {**first, "event_time": 0}, time_ms=0)
    rep.on_label("r1", second["label"], time_ms=0)  # early: its request (own partition) comes later
    rep.on_peer_request(1, {"id": "p", "event_time": 0, "features": first["features"], "label": 1},
                        time_ms=10 * 3_600_000)  # a peer partition's clock ten hours ahead
    rep.on_request(0, {**second, "label": None}, time_ms=1)
    assert rep.n_learned == 2

"""ModelReplica and PartitionRouting: the host's data path as records in, records out."""

import json
import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedrift import datasets
from fedrift.core.models import FAMILIES, config_id
from fedrift.core.partition import PartitionRouting
from fedrift.core.replica import ModelReplica, ReplicaConfig, ReplicaTuning, id_digest, mirrored
from schemas import FeatureCountMismatch, InvalidRecord, NonFiniteFeature

POOL = ("gnb", "linear", "hat")


def _replica(model: str, **kw) -> ModelReplica:
    return ModelReplica(FAMILIES[model], ReplicaConfig(pool=POOL, model=model, status_every=50, **kw))


def _stream(n: int, late_every: int = 0, markers: dict | None = None):
    """("req", partition, request) / ("label", id, y) / ("weights", partition, record) records."""
    out = []
    for i, (x, y) in enumerate(datasets.synthetic("sea", n, seed=4)):
        if markers and i in markers:  # the controller writes a marker into every partition
            out += [("weights", 0, markers[i]), ("weights", 1, markers[i])]
        late = late_every and i % late_every == 0
        out.append(("req", i % 2, {"id": f"r{i}", "event_time": i, "features": x, "label": None if late else y}))
        if late:
            out.append(("label", f"r{i}", y))
    return out


def _feed(rep: ModelReplica, records) -> list:
    outputs = []
    for kind, a, b in records:
        if kind == "req":
            outputs += rep.on_request(a, b)
        elif kind == "label":
            outputs += rep.on_label(a, b)
        else:
            rep.on_weights(a, b)
    return outputs


MARKERS = {300: {"version": 1, "weights": {"gnb": 0.7, "linear": 0.2, "hat": 0.1}},
           900: {"version": 2, "weights": {"gnb": 0.0, "linear": 1.0, "hat": 1.0}}}


def test_every_request_is_served_by_exactly_one_model_with_the_weights_shares():
    records = _stream(1500, late_every=7, markers=MARKERS)
    served: dict[str, list[str]] = {}
    for model in POOL:
        for o in _feed(_replica(model), records):
            if o.record == "Prediction":
                served.setdefault(o.key, []).append(o.value["model"])
    assert len(served) == 1500 and all(len(v) == 1 for v in served.values())
    between = [served[f"r{i}"][0] for i in range(300, 900)]
    assert abs(between.count("gnb") / len(between) - 0.7) < 0.01
    assert {served[f"r{i}"][0] for i in range(900, 1500)} == {"linear", "hat"}


def test_late_and_early_labels_are_learned_once_each():
    rep = _replica("gnb")
    rep.on_label("early", 1)  # before its request
    assert rep.on_request(0, {"id": "early", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": None})
    assert rep.n_learned == 1 and not rep.early
    rep.on_request(0, {"id": "late", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": None})
    assert rep.n_learned == 1
    rep.on_label("late", 0)
    rep.on_label("late", 0)  # a repeated label finds nothing pending: held, never learned twice
    assert rep.n_learned == 2
    assert rep.learned_digest == (id_digest("early") + id_digest("late")) % 2**64


def test_a_duplicate_request_id_gets_no_second_answer():
    rep = _replica("gnb")
    req = {"id": "x", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": 1}
    assert any(o.record == "Prediction" for o in rep.on_request(0, req))
    assert rep.on_request(0, req) == [] and rep.n_learned == 1


@pytest.mark.parametrize(
    ("weights", "why"),
    [
        ({"gnb": math.inf}, "finite"),
        ({"gnb": -1.0, "linear": 2.0}, "finite and >= 0"),
        ({"gnb": 0.0}, "positive weight"),
        ({"other": 1.0}, "positive weight"),
    ],
)
def test_unusable_weights_are_refused_and_routing_stays_as_it_was(weights, why):
    routing = PartitionRouting(POOL)
    routing.apply_weights({"version": 3, "weights": {"gnb": 1.0}})
    with pytest.raises(InvalidRecord, match=why):
        routing.apply_weights({"version": 4, "weights": weights})
    assert routing.version == 3 and routing.route({"id": "a", "features": [1.0]}) == "gnb"


def test_stale_weights_are_ignored():
    routing = PartitionRouting(POOL)
    routing.apply_weights({"version": 3, "weights": {"gnb": 1.0}})
    routing.apply_weights({"version": 2, "weights": {"hat": 1.0}})
    assert routing.version == 3


def test_the_feature_contract_is_fixed_by_the_first_valid_request_of_the_partition():
    routing = PartitionRouting(POOL)
    with pytest.raises(NonFiniteFeature):
        routing.route({"id": "a", "features": [1.0, math.nan]})
    routing.route({"id": "b", "features": [1.0, 2.0]})
    with pytest.raises(FeatureCountMismatch):
        routing.route({"id": "c", "features": [1.0]})
    with pytest.raises(FeatureCountMismatch, match="no features"):
        PartitionRouting(POOL, n_features=3).route({"id": "d", "features": []})


def test_mirrored_is_stable_and_close_to_the_fraction():
    ids = [f"req-{i}" for i in range(20_000)]
    picked = [mirrored(i, 0.2) for i in ids]
    assert picked == [mirrored(i, 0.2) for i in ids]
    assert abs(sum(picked) / len(ids) - 0.2) < 0.01
    assert not any(mirrored(i, 0.0) for i in ids[:100]) and all(mirrored(i, 1.0) for i in ids[:100])


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(0, 1200), crash=st.integers(0, 1200))
def test_restore_and_silent_replay_gives_the_uninterrupted_outputs(cut, crash):
    """The host's recovery on the pure core: state pickled at ``cut`` (a checkpoint), the process
    dies at ``cut + crash`` (committed so far), and the restored copy replays from ``cut`` with
    outputs dropped up to the commit point. Outputs and learning match a run without a crash."""
    records = _stream(1200, late_every=5, markers=MARKERS)
    crash = min(cut + crash, len(records))
    whole = _replica("linear")
    expected = _feed(whole, records)
    rep = _replica("linear")
    sent = _feed(rep, records[:cut])
    snapshot = pickle.dumps(rep)
    sent += _feed(rep, records[cut:crash])  # committed, then the crash loses this in-memory state
    restored = pickle.loads(snapshot)
    _feed(restored, records[cut:crash])  # replay, outputs suppressed
    sent += _feed(restored, records[crash:])
    key = lambda o: (o.record, o.key, o.value.get("n_seen"))  # noqa: E731
    assert sorted(map(key, sent)) == sorted(map(key, expected))
    assert (restored.n_learned, restored.learned_digest) == (whole.n_learned, whole.learned_digest)


def test_deployments_validate_their_configuration():
    rep = _replica("gnb")
    for _ in range(300):
        rep.on_request(0, {"id": f"w{_}", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": _ % 2})
    with pytest.raises(InvalidRecord, match="no hyperparameter"):
        rep.on_deployment({"model": "gnb", "action": "SHADOW_START", "config_json": '{"bogus": 1}'})
    with pytest.raises(InvalidRecord, match="outside its search space"):
        rep.on_deployment({"model": "gnb", "action": "SHADOW_START", "config_json": '{"window": 10}'})
    with pytest.raises(InvalidRecord, match="not JSON"):
        rep.on_deployment({"model": "gnb", "action": "PROMOTE", "config_json": "{"})
    assert rep.shadow is None and rep.config == FAMILIES["gnb"].defaults
    assert rep.on_deployment({"model": "gnb", "action": "SHADOW_START", "config_json": '{"window": 300}'})
    assert rep.shadow_config == {"window": 300}
    assert rep.on_deployment({"model": "gnb", "action": "PROMOTE", "config_json": '{"window": 300}'})
    assert rep.config == {"window": 300} and rep.shadow is None
    assert not rep.on_deployment({"model": "gnb", "action": "PROMOTE", "config_json": '{"window": 300}'})


def test_a_huge_feature_is_refused_before_any_model_sees_it():
    with pytest.raises(NonFiniteFeature, match="beyond"):
        PartitionRouting(POOL).route({"id": "big", "features": [1e200, 1.0]})


class Broken:
    def predict_proba_one(self, x):
        raise OverflowError("math range error")

    def learn_one(self, x, y):
        raise ZeroDivisionError("float division by zero")


def test_a_model_that_fails_on_a_request_answers_null_and_the_replica_goes_on():
    rep = _replica("gnb")
    rep.production = Broken()
    [prediction, _status] = rep.on_request(0, {"id": "a", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": 1})
    assert prediction.value["prediction"] is None and rep.model_errors == 2  # predict, then learn


def test_labels_ahead_of_their_requests_are_held_then_paced_and_orphans_expire():
    rep = ModelReplica(FAMILIES["gnb"], ReplicaConfig(pool=POOL, model="gnb", early_limit=3,
                                                      tuning=ReplicaTuning(label_horizon_ms=1000)))
    for i in range(5):  # a restarted host read the labels faster than the requests
        rep.on_label(f"r{i}", i % 2, time_ms=100 + i)
    assert rep.labels_ahead and rep.n_learned == 0  # the host pauses the labels here; nothing is dropped
    for i in range(5):
        rep.on_request(0, {"id": f"r{i}", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": None}, time_ms=100 + i)
    assert rep.n_learned == 5 and not rep.early
    rep.on_label("never-requested", 1, time_ms=200)
    rep.on_request(0, {"id": "later", "event_time": 0, "features": [1.0, 2.0, 3.0], "label": 1}, time_ms=1300)
    assert "never-requested" not in rep.early  # the requests are past it by the horizon: an orphan


def test_the_hpo_window_as_of_a_trigger_holds_the_events_up_to_its_time_late_labels_included():
    rep = _replica("gnb")
    _feed(rep, _stream(400, late_every=5))
    cut = rep.window.as_of(299)
    assert [x for _, x, _ in cut] == [x for _, x, _ in list(rep.window.events)[:300]]
    assert len(rep.window.as_of(-1)) == 400


def test_a_late_label_for_an_old_request_does_not_stretch_the_hpo_cut_over_newer_events():
    rep = _replica("gnb")
    for i, t in enumerate((10, 20, 30, 40)):
        rep.on_request(0, {"id": f"r{i}", "event_time": t, "features": [1.0, 2.0, float(i)], "label": 1})
    rep.on_request(0, {"id": "old", "event_time": 15, "features": [1.0, 2.0, 9.0], "label": None})
    rep.on_label("old", 0)  # learned after the request of time 40
    assert [x[2] for _, x, _ in rep.window.as_of(25)] == [0.0, 1.0]
    assert len(rep.window.as_of(40)) == 5


def test_a_window_from_a_checkpoint_without_event_times_still_learns_and_cuts():
    rep = _replica("gnb")
    rep.on_request(0, {"id": "a", "event_time": 10, "features": [1.0, 2.0, 3.0], "label": 1})
    del rep.window.__dict__["times"]  # the shape of a checkpoint written before event times were kept
    old = pickle.loads(pickle.dumps(rep))
    old.on_request(0, {"id": "b", "event_time": 20, "features": [1.0, 2.0, 4.0], "label": 0})
    assert len(old.window.as_of(15)) == 1 and len(old.window.as_of(20)) == 2  # the old event counts as time 0


def test_a_status_says_up_to_which_request_time_its_host_had_learned():
    rep = _replica("gnb")
    assert rep.status().value["as_of"] == -1
    late = ("req", 0, {"id": "r-late", "event_time": 7, "features": [0.0, 0.0, 0.0], "label": None})
    _feed(rep, [*_stream(5), late])  # unlabelled: not learned
    assert rep.status().value["as_of"] == 4


def test_a_shadow_starts_at_its_first_mirrored_request_wherever_its_deployment_came():
    """Two replicas that get the same deployment a few unmirrored requests apart run the same
    shadow: it is built from production at its first mirrored request, not on arrival."""
    # linear is retuned in place: a shadow built earlier would have learned other requests
    deploy = {"model": "linear", "action": "SHADOW_START", "config_json": '{"lr": 0.05, "l2": 0.0}'}
    reqs = [{"id": f"s{i}", "event_time": i, "features": [float(i % 7), 1.0, 2.0], "label": i % 2} for i in range(400)]
    first = next(i for i in range(300, 400) if mirrored(reqs[i]["id"], 0.2))
    early, late = _replica("linear"), _replica("linear")
    results = {}
    for rep, at in ((early, 300), (late, first)):
        for i, req in enumerate(reqs):
            if i == at:
                assert rep.on_deployment(deploy)
            out = rep.on_request(0, req)
            if i < first:
                assert rep.shadow is None  # nothing mirrored since its deployment
            results.setdefault(id(rep), []).extend(
                (o.value["request_id"], o.value["shadow_prediction"]) for o in out if o.record == "ShadowResult")
    assert results[id(early)] and results[id(early)] == results[id(late)]
    probe = [[float(k), 1.0, 2.0] for k in range(7)]
    assert [early.shadow.predict_proba_one(x) for x in probe] == [late.shadow.predict_proba_one(x) for x in probe]


def _mirrored_request(rep, n: int = 0) -> str:
    """The id of the ``n``-th request ``rep``'s shadow would answer."""
    return [f"q{i}" for i in range(1000) if mirrored(f"q{i}", rep.cfg.shadow_fraction)][n]


def test_a_late_label_is_evidence_only_for_the_shadow_run_that_predicted_its_request():
    """A label that arrives after the next shadow started is no evidence for that shadow: not
    when another configuration started, nor when the same one was rejected and started again
    (its configuration id alone would pass it as the new run's)."""
    rep = _replica("linear")
    _feed(rep, _stream(50))  # a model that predicts
    first, second = '{"lr": 0.05, "l2": 0.0}', '{"lr": 0.2, "l2": 0.0}'
    start = {"model": "linear", "action": "SHADOW_START", "config_json": first}
    rep.on_deployment(start)
    rid, late = _mirrored_request(rep, 0), _mirrored_request(rep, 1)
    for r in (rid, late):
        rep.on_request(0, {"id": r, "event_time": 1, "features": [1.0, 2.0, 3.0], "label": None})
    [result] = [o.value for o in rep.on_label(rid, 1) if o.record == "ShadowResult"]  # the same run: evidence
    assert result["shadow_config_id"] == config_id(json.loads(first))
    assert result["production_config_id"] == rep.config_id
    rep.on_deployment({**start, "action": "REJECT"})
    rep.on_deployment(start)  # the same configuration, a new run
    assert [o for o in rep.on_label(late, 1) if o.record == "ShadowResult"] == []
    rep.on_request(0, {"id": _mirrored_request(rep, 2), "event_time": 2, "features": [1.0, 2.0, 3.0], "label": None})
    rep.on_deployment({**start, "config_json": second})
    assert [o for o in rep.on_label(_mirrored_request(rep, 2), 1) if o.record == "ShadowResult"] == []

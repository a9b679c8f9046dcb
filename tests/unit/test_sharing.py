"""Sharing identical models in the simulator (``fedrift.sharing``) must change no result."""

import copy
import pickle
from unittest.mock import patch

from fedrift.config import Settings
from fedrift.core.models import FAMILIES
from fedrift.datasets import synthetic
from fedrift.sharing import ModelSharing, SharedModel
from fedrift.simulate import SimConfig, run


def _run(pool, stream, n, shared: bool):
    # every request mirrored to a shadow, short tests: deployments within a few thousand events
    cfg = SimConfig.from_settings(Settings(models=pool), seed=3, share_models=shared, shadow_fraction=1.0,
                                  shadow_min=50, hpo_latency_s=1.0)
    return run(synthetic(stream, n, seed=3), cfg)


def test_a_shared_run_gives_the_unshared_result_exactly_and_learns_less():
    pool, n = ("linear", "pa", "hat", "gnb"), 6000
    plain, shared = _run(pool, "sea", n, False), _run(pool, "sea", n, True)
    result = shared.result()
    assert result == plain.result()
    assert result["shadow"]["promotions"] >= 2, "the test must cover shadows and promotions"
    assert shared.pipeline.sharing.updates_applied < 0.4 * n * len(pool) * 4  # K=3 replicas + the baseline
    # the baselines learn before the replicas (``Simulation.step``): no member falls behind its line
    assert shared.pipeline.sharing.forks == 0


def test_a_shared_forest_gives_the_unshared_result_exactly():
    plain, shared = _run(("arf", "pa"), "agrawal", 1500, False), _run(("arf", "pa"), "agrawal", 1500, True)
    assert shared.result() == plain.result()


def test_a_shared_knn_gives_the_unshared_result_exactly():
    plain, shared = _run(("knn", "pa"), "rbf", 1500, False), _run(("knn", "pa"), "rbf", 1500, True)
    assert shared.result() == plain.result()


def test_a_member_that_learns_something_else_leaves_with_its_own_state():
    fam = FAMILIES["hat"]
    sharing = ModelSharing()
    a, b = sharing.share([fam.build(fam.defaults, seed=1), fam.build(fam.defaults, seed=1)])
    c, d = fam.build(fam.defaults, seed=1), fam.build(fam.defaults, seed=1)
    for i in range(300):
        x, y = [i % 7 / 7, (i * 3) % 5 / 5], i % 2
        a.learn_one(x, y)
        c.learn_one(x, y)
        yb = y if i < 150 else 1 - y  # b diverges half way
        b.learn_one(x, yb)
        d.learn_one(x, yb)
        if i % 10 == 0:  # b asks only now and then: a's line must keep b's older state for it
            assert a.predict_proba_one(x) == c.predict_proba_one(x)
    probe = [0.3, 0.6]
    assert a.predict_proba_one(probe) == c.predict_proba_one(probe)
    assert b.predict_proba_one(probe) == d.predict_proba_one(probe)
    assert sharing.forks >= 1


def test_a_lagging_member_is_given_a_copy_before_the_line_moves_on():
    fam = FAMILIES["linear"]
    sharing = ModelSharing()
    a, b = sharing.share([fam.build(fam.defaults), fam.build(fam.defaults)])
    ref = fam.build(fam.defaults)
    before = b.predict_proba_one([1.0, 2.0])
    a.learn_one([1.0, 2.0], 1)
    ref.learn_one([1.0, 2.0], 1)
    assert a.predict_proba_one([1.0, 2.0]) == ref.predict_proba_one([1.0, 2.0])
    assert b.predict_proba_one([1.0, 2.0]) == before  # b learned nothing yet
    b.learn_one([1.0, 2.0], 1)
    assert b.predict_proba_one([1.0, 2.0]) == ref.predict_proba_one([1.0, 2.0])


def test_copies_and_pickles_of_a_member_are_plain_models_in_its_state():
    fam = FAMILIES["pa"]
    a, _b = ModelSharing().share([fam.build(fam.defaults), fam.build(fam.defaults)])
    a.learn_one([1.0, 0.0], 1)
    a.learn_one([0.0, 1.0], 0)
    for other in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert not isinstance(other, SharedModel)
        assert other.predict_proba_one([0.2, 0.9]) == a.predict_proba_one([0.2, 0.9])


def _events(n, seed=0):
    import random

    rng = random.Random(seed)
    return [([rng.random(), rng.random(), rng.random()], int(rng.random() > 0.5)) for _ in range(n)]


def test_every_family_that_may_share_answers_the_same_after_extra_predictions():
    # sharing lets other members predict on the one object: that must not change its later answers
    train, probe = _events(800), _events(50, seed=1)  # past kNN's 500-event brute-force warm-up
    for name, fam in FAMILIES.items():
        if not fam.pure_predict:
            continue
        asked, quiet = fam.build(fam.defaults, seed=2), fam.build(fam.defaults, seed=2)
        for x, y in train:
            asked.predict_proba_one(x)
            asked.predict_one(x)
            asked.learn_one(x, y)
            quiet.learn_one(x, y)
        assert [asked.predict_proba_one(x) for x, _ in probe] == [quiet.predict_proba_one(x) for x, _ in probe], name


def test_knn_queries_leave_its_neighbour_graph_and_generator_as_they_were():
    fam, train = FAMILIES["knn"], _events(700)  # past the 500-event brute-force warm-up
    asked, quiet = fam.build(fam.defaults, seed=2), fam.build(fam.defaults, seed=2)
    for x, y in train:
        asked.predict_one(x)
        asked.learn_one(x, y)
        quiet.learn_one(x, y)
    assert pickle.dumps(asked) == pickle.dumps(quiet)


def test_a_family_whose_predictions_change_it_is_not_shared():
    from dataclasses import replace

    impure = replace(FAMILIES["linear"], name="impure", pure_predict=False)
    with patch.dict(FAMILIES, {"impure": impure}):
        sim = _run(("impure", "linear"), "sea", 300, True)
    assert not any(isinstance(r.production, SharedModel) for r in sim.pipeline.replicas["impure"])
    assert all(isinstance(r.production, SharedModel) for r in sim.pipeline.replicas["linear"])
    assert not isinstance(sim.static["impure"], SharedModel)


def test_a_caller_reusing_its_feature_list_does_not_change_what_was_learned():
    fam = FAMILIES["linear"]
    a, _b = ModelSharing().share([fam.build(fam.defaults), fam.build(fam.defaults)])
    ref = fam.build(fam.defaults)
    buf = [0.0, 0.0]
    for i in range(20):
        buf[0], buf[1] = i / 20, 1 - i / 20
        a.learn_one(buf, i % 2)
        ref.learn_one(list(buf), i % 2)
    assert a.predict_proba_one([0.3, 0.4]) == ref.predict_proba_one([0.3, 0.4])


class _FailsOnTwo:
    """A model whose update fails on label 2, as a library can on one odd input."""

    def __init__(self):
        self.n = 0

    def learn_one(self, x, y):
        if y == 2:
            raise ValueError("label 2")
        self.n += 1

    def predict_one(self, x):
        return self.n


def test_an_update_that_fails_is_reported_to_every_member_that_learned_it():
    members = ModelSharing().share([_FailsOnTwo(), _FailsOnTwo(), _FailsOnTwo()])
    alone = _FailsOnTwo()
    errors = {i: 0 for i in range(4)}
    labels = [0, 1, 2, 0, 2, 1, 0, 0]
    for step, y in enumerate(labels):
        for i, m in enumerate([*members, alone]):
            try:
                m.learn_one([1.0], y)
            except ValueError:
                errors[i] += 1
        if step % 3 == 2:
            members[0].predict_one([1.0])  # the tape is applied here: the failures are found
    for m in members:
        m.learn_one([1.0], 0)  # a failure found late is raised by a member's next update
    assert all(n == errors[3] == 2 for n in errors.values())
    assert all(m.predict_one([1.0]) == alone.predict_one([1.0]) + 1 for m in members)


def test_copies_of_members_together_are_separate_models_in_each_state():
    fam = FAMILIES["linear"]
    a, b = ModelSharing().share([fam.build(fam.defaults), fam.build(fam.defaults)])
    ref = fam.build(fam.defaults)
    for m in (a, b, ref):
        m.learn_one([1.0, 0.0], 1)
    probe = [0.4, 0.7]
    for ca, cb in (copy.deepcopy([a, b]), pickle.loads(pickle.dumps([a, b]))):
        assert ca is not cb
        ca.learn_one([0.0, 1.0], 0)  # one copy learning must leave the other as it was
        assert cb.predict_proba_one(probe) == ref.predict_proba_one(probe)
        assert a.predict_proba_one(probe) == b.predict_proba_one(probe) == ref.predict_proba_one(probe)


def test_a_member_that_never_learns_does_not_make_the_tape_grow():
    from fedrift import sharing as mod

    fam = FAMILIES["linear"]
    a, idle = ModelSharing().share([fam.build(fam.defaults), fam.build(fam.defaults)])
    fresh, ref = fam.build(fam.defaults), fam.build(fam.defaults)
    for x, y in _events(3 * mod._TAPE_LIMIT):
        a.learn_one(x, y)
        ref.learn_one(x, y)
        assert len(a._line.tape) < mod._TAPE_LIMIT
    probe = [0.2, 0.5, 0.9]
    assert a.predict_proba_one(probe) == ref.predict_proba_one(probe)
    assert idle.predict_proba_one(probe) == fresh.predict_proba_one(probe)


def test_labels_that_compare_equal_but_differ_in_type_are_different_updates():
    fam = FAMILIES["gnb"]
    a, b = ModelSharing().share([fam.build(fam.defaults), fam.build(fam.defaults)])
    ref_a, ref_b = fam.build(fam.defaults), fam.build(fam.defaults)
    for x, _ in _events(30):
        for m, r, y in ((a, ref_a, True), (b, ref_b, 1)):
            m.learn_one(x, y)
            r.learn_one(x, y)
    probe = [0.5, 0.5, 0.5]
    pa, pb = a.predict_proba_one(probe), b.predict_proba_one(probe)
    assert [type(k) for k in pa] == [type(k) for k in ref_a.predict_proba_one(probe)]
    assert [type(k) for k in pb] == [type(k) for k in ref_b.predict_proba_one(probe)]


def test_one_state_and_one_question_are_computed_once_and_answered_alike():
    fam = FAMILIES["arf"]
    sharing = ModelSharing()
    a, b = sharing.share([fam.build(fam.defaults, seed=1), fam.build(fam.defaults, seed=1)])
    plain = fam.build(fam.defaults, seed=1)
    calls = 0
    real = type(plain.estimator).predict_proba_one

    def counted(self, x, **kw):
        nonlocal calls
        calls += 1
        return real(self, x, **kw)

    with patch.object(type(plain.estimator), "predict_proba_one", counted):
        for x, y in _events(300):
            calls = 0
            assert a.predict_one(x) == plain.predict_one(x)
            proba = b.predict_proba_one(x)
            assert calls == 2, "the line computed b's question again (a asked it of the same state)"
            assert proba == plain.predict_proba_one(x)
            proba.clear()  # a caller changing its answer changes no other member's
            assert b.predict_proba_one(x) == plain.predict_proba_one(x)
            for m in (a, b, plain):
                m.learn_one(x, y)
        assert a.predict_proba_one([9.0, 9.0]) == plain.predict_proba_one([9.0, 9.0])  # other features


def test_a_model_whose_predict_one_is_its_own_is_asked_directly():
    fam = FAMILIES["linear"]
    sharing = ModelSharing()
    a, _b = sharing.share([fam.build(fam.defaults), fam.build(fam.defaults)])
    estimator = a.resolve().estimator
    with patch.object(type(estimator), "predict_one", lambda self, x, **kw: "own", create=True):
        assert a.predict_one([0.1, 0.2]) == "own"

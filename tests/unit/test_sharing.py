"""Sharing identical models in the simulator (``fedrift.sharing``) must change no result."""

import copy
import pickle

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


def test_a_shared_forest_gives_the_unshared_result_exactly():
    plain, shared = _run(("arf", "pa"), "agrawal", 1500, False), _run(("arf", "pa"), "agrawal", 1500, True)
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

import numpy as np
import pytest
from skopt.space import Space

from fedrift.core.models import FAMILIES, config_id


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_learns_from_defaults_and_from_its_search_space(name):
    fam = FAMILIES[name]
    assert fam.space, "every family declares a search space"
    rng = np.random.default_rng(0)
    configs = [fam.defaults] + [fam.from_point(p) for p in Space(fam.space).rvs(2, random_state=1)]
    for cfg in configs:
        model = fam.build(cfg, seed=0)
        correct = 0
        for i in range(600):
            x = list(rng.normal(size=4))
            y = int(x[0] > 0)
            if i >= 300:
                correct += model.predict_one(x) == y
            model.learn_one(x, y)
        assert correct / 300 > 0.7, (name, cfg)
        proba = model.predict_proba_one([1.0, 0.0, 0.0, 0.0])
        assert set(proba) <= {0, 1} and abs(sum(proba.values()) - 1) < 1e-6


def test_multiclass_labels_work_for_every_family():
    rng = np.random.default_rng(1)
    for fam in FAMILIES.values():
        model = fam.build(fam.defaults)
        for _ in range(300):
            x = list(rng.normal(size=2))
            model.learn_one(x, int(rng.integers(0, 3)))
        assert model.predict_one([0.0, 0.0]) in {0, 1, 2}


def test_config_ids_are_stable_and_distinct():
    assert config_id({"a": 1, "b": 2.0}) == config_id({"b": 2.0, "a": 1})
    assert config_id({"a": 1}) != config_id({"a": 2})

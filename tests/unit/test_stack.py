"""The pinned stack imports and works together (diffprivlib breaks on the newest scikit-learn)."""

import importlib.metadata as md

import pytest


def test_diffprivlib_works_with_the_pinned_scikit_learn():
    from diffprivlib.mechanisms import Laplace

    noised = Laplace(epsilon=1.0, sensitivity=0.01, random_state=0).randomise(0.5)
    assert noised != 0.5 and abs(noised - 0.5) < 1.0
    major, minor = (int(p) for p in md.version("scikit-learn").split(".")[:2])
    assert (major, minor) < (1, 9)


@pytest.mark.parametrize(
    "module", ["confluent_kafka", "faust", "numpy", "river", "skopt", "fastavro", "diffprivlib", "sklearn"]
)
def test_stack_imports(module):
    __import__(module)


def test_skopt_ask_tell_runs_with_pinned_numpy():
    from skopt import Optimizer

    opt = Optimizer([(0.0, 1.0)], base_estimator="GP", n_initial_points=2, random_state=0)
    for _ in range(3):
        x = opt.ask()
        opt.tell(x, (x[0] - 0.3) ** 2)
    assert len(opt.Xi) == 3

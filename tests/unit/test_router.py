from hypothesis import given, settings
from hypothesis import strategies as st

from fedrift.core.router import DeficitRouter

weights_st = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.floats(0.01, 10.0), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(weights=weights_st, n=st.integers(1, 2000))
def test_deficit_routing_tracks_the_weights_within_one_request(weights, n):
    router = DeficitRouter(weights)
    for i in range(1, n + 1):
        router.choose()
        for m, w in router.weights.items():
            assert abs(router.counts[m] - w * i) < 1.0 + 1e-9


def test_new_weights_restart_the_counts():
    router = DeficitRouter({"a": 1.0, "b": 1.0})
    for _ in range(10):
        router.choose()
    router.set_weights({"a": 0.0, "b": 1.0}, version=2)
    assert {router.choose() for _ in range(5)} == {"b"} and router.version == 2


def test_all_zero_weights_are_refused():
    import pytest

    with pytest.raises(ValueError, match="positive weight"):
        DeficitRouter({"a": 0.0})

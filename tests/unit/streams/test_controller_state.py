"""The controller shell's bookkeeping: ModelStatus counters → Fixed Share evidence (no broker)."""

import pytest

from fedrift.config import Settings
from fedrift.core.routing import RoutingController
from streams.controller import ControllerState


def _state() -> ControllerState:
    state = ControllerState.__new__(ControllerState)  # skip the compacted-topic restore
    state.settings = Settings(models=("linear", "hat"))
    state.controller = RoutingController()
    state.status, state.batch = {}, {}
    return state


def _status(host: str, model: str, seen: int, correct: int) -> dict:
    return {"host": host, "model": model, "n_seen": seen, "n_correct": correct}


def test_counters_are_differenced_per_host_and_fed_once_every_model_scored():
    state = _state()
    for host, model in (("linear-0", "linear"), ("linear-1", "linear"), ("hat-0", "hat")):
        state.apply_status(_status(host, model, 100, 50))  # baselines
    state.apply_status(_status("linear-0", "linear", 300, 230))  # +200 scored, +180 right
    state.apply_status(_status("linear-1", "linear", 300, 230))
    state.observe_batch()
    assert state.controller.evidence.p == {}  # hat has not been scored yet: wait
    state.apply_status(_status("hat-0", "hat", 500, 250))  # +400 scored, +200 right
    state.observe_batch()
    assert state.batch == {}
    w = state.controller.evidence.weights()
    # linear 90 % vs hat 50 % over min(400, 400) events
    assert w["linear"] > 0.99 and w["hat"] == pytest.approx(1 - w["linear"])


def test_a_restarted_host_sets_a_new_baseline():
    state = _state()
    state.apply_status(_status("hat-0", "hat", 1000, 900))
    state.apply_status(_status("hat-0", "hat", 200, 100))  # counters went back: no negative batch
    assert state.batch == {}
    state.apply_status(_status("hat-0", "hat", 300, 190))
    assert state.batch == {"hat": [90, 100]}

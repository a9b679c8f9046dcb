"""The drift stage: one cold-start round after ``cold_start_at`` quiet requests; error-drift flags
trigger only once a quorum of hosts agrees."""

from __future__ import annotations

import pytest

from fedrift.config import Settings
from fedrift.core.drift import DriftAnalyzer, DriftConfig, DriftReport
from fedrift.core.drift_stage import DriftStage


class QuietAnalyzer:
    """An analyzer that reports nothing, or a triggered drift at the positions given."""

    seed = 4
    config = DriftConfig()

    def __init__(self, drift_at: tuple[int, ...] = ()) -> None:
        self.drift_at, self.position = drift_at, 0

    def update(self, features):
        self.position += 1
        if self.position in self.drift_at:
            return DriftReport(position=self.position, score=9.0, threshold=1.0, triggered=True, source="input",
                               components={}, top_features=[])
        return None


def _triggers(stage: DriftStage, n: int) -> list[dict]:
    return [o.value for i in range(n) for o in stage.on_request([0.0], i) if o.record == "HpoTrigger"]


def test_one_round_runs_after_the_cold_start_period_without_drift():
    got = _triggers(DriftStage(QuietAnalyzer(), "d", "p", cold_start_at=5), 20)
    assert [(t["round_id"], t["reason"]) for t in got] == [("p-5-1", "cold start")]


def test_no_cold_start_round_after_a_drift_round_or_when_off():
    assert [t["reason"] for t in _triggers(DriftStage(QuietAnalyzer((3,)), "d", "p", 5), 20)] == ["input drift"]
    assert _triggers(DriftStage(QuietAnalyzer(), "d", "p", cold_start_at=0), 20) == []


def _status(host: str, flagged: bool) -> dict:
    return {"host": host, "error_drift": flagged, "window_quality": 0.8}


def _flag_triggers(stage: DriftStage, script: list[tuple[int, str]], n: int) -> list[int]:
    """Feed ``n`` requests; after request i, each host named for i reports an error-drift flag."""
    flags: dict[int, list[str]] = {}
    for at, host in script:
        flags.setdefault(at, []).append(host)
    fired = []
    for i in range(1, n + 1):
        stage.on_request([0.0], i)
        for host in flags.get(i, []):
            fired += [i for o in stage.on_status(_status(host, True), i) if o.record == "HpoTrigger"]
    return fired


def _stage(quorum: int = 2, window: int = 100) -> DriftStage:
    stage = DriftStage(DriftAnalyzer(DriftConfig(error_quorum=quorum, error_quorum_window=window, cooldown=50)),
                       "d", "p")
    for host in ("a-0", "a-1", "b-0"):
        stage.on_status(_status(host, False), 0)
    return stage


def test_a_lone_error_flag_does_not_trigger():
    assert _flag_triggers(_stage(), [(10, "a-0"), (300, "b-0")], 400) == []


def test_a_second_host_flagging_within_the_window_triggers_once():
    assert _flag_triggers(_stage(), [(10, "a-0"), (60, "b-0"), (70, "a-1")], 200) == [60]


def test_the_same_host_flagging_twice_is_not_a_quorum():
    assert _flag_triggers(_stage(), [(10, "a-0"), (20, "a-0")], 100) == []


def test_with_one_host_known_its_flag_is_enough():
    stage = DriftStage(DriftAnalyzer(DriftConfig(error_quorum=2)), "d", "p")
    assert _flag_triggers(stage, [(5, "solo-0")], 10) == [5]


def test_a_trigger_names_the_newest_request_time_the_analyzer_had_seen():
    stage = DriftStage(QuietAnalyzer(), "d", "p", cold_start_at=3)
    outputs = [o for t in (100, 300, 200) for o in stage.on_request([0.0], 0, event_time=t)]
    assert [(o.value["as_of"], o.value["design"]) for o in outputs if o.record == "HpoTrigger"] == [(300, "4-1")]


def test_an_unusable_quorum_setting_is_refused_with_its_name():
    with pytest.raises(ValueError, match="FEDRIFT_DRIFT_ERROR_QUORUM=0"):
        Settings.from_env({"FEDRIFT_DRIFT_ERROR_QUORUM": "0"})
    with pytest.raises(ValueError, match="FEDRIFT_DRIFT_ERROR_QUORUM_WINDOW=-1"):
        DriftConfig(error_quorum_window=-1)


def _drift_positions(outputs) -> list[int]:
    return [o.value["position"] for o in outputs if o.record == "DriftSignal"]


def test_a_flag_from_beyond_the_inputs_read_is_placed_at_the_request_that_raised_it():
    """The analyzer reads the requests behind the hosts: a flag raised at the request of time 50
    waits for the inputs to get there, and is placed there, where the simulator places it."""
    stage = DriftStage(DriftAnalyzer(DriftConfig()), "d", "p")
    early = [o for t in range(10, 30) for o in stage.on_request([0.0], 0, event_time=t)]
    assert stage.on_status({**_status("a-0", True), "as_of": 50}, now_ms=0) == []  # held
    later = [o for t in range(30, 60) for o in stage.on_request([0.0], 0, event_time=t)]
    assert _drift_positions(early) == [] and _drift_positions(later) == [41]  # request 41 has time 50


def test_a_flag_from_behind_the_inputs_read_is_placed_at_its_request_up_to_one_window_back():
    stage = DriftStage(DriftAnalyzer(DriftConfig(window=250)), "d", "p")
    for t in range(100):
        stage.on_request([0.0], 0, event_time=t)
    assert _drift_positions(stage.on_status({**_status("a-0", True), "as_of": 50}, now_ms=0)) == [51]
    far = DriftStage(DriftAnalyzer(DriftConfig(window=20, cooldown=0)), "d", "p")
    for t in range(100):
        far.on_request([0.0], 0, event_time=t)
    assert _drift_positions(far.on_status({**_status("a-0", True), "as_of": 50}, now_ms=0)) == [100]


def test_where_the_analyzer_had_read_to_when_a_flag_came_changes_nothing_after_it():
    """Two analyzers see the same inputs and the same flag (raised at the request of time 2999),
    one at once and one 40 requests later: the same trigger position, and the same input windows,
    scores and triggers after it."""
    import numpy as np

    rng = np.random.default_rng(3)
    xs = [list(rng.normal(size=3) + (2.0 if t >= 4500 else 0.0)) for t in range(7000)]

    def run(late: int) -> list[tuple]:
        stage = DriftStage(DriftAnalyzer(DriftConfig(), seed=1), "d", "p")
        out = []
        for t, x in enumerate(xs):
            out += stage.on_request(x, 0, event_time=t)
            if t == 2999 + late:
                out += stage.on_status({**_status("a-0", True), "as_of": 2999}, now_ms=0)
        return [(o.value["position"], o.value["source"], round(o.value["score"], 9))
                for o in out if o.record == "DriftSignal"]

    on_time, late = run(0), run(40)
    assert [(pos, src) for pos, src, _ in late if src == "error"] == [(3000, "error")] and on_time == late
    assert any(src == "input" and pos > 4500 for pos, src, _ in on_time)  # the shift after it is found


def test_a_held_flag_waits_at_most_flag_hold_ms():
    stage = DriftStage(DriftAnalyzer(DriftConfig(flag_hold_ms=500)), "d", "p")
    stage.on_request([0.0], 0, event_time=1)
    assert stage.on_status({**_status("a-0", True), "as_of": 10**9}, now_ms=1000) == []
    assert stage.on_status(_status("b-0", False), now_ms=1400) == []
    assert _drift_positions(stage.on_status(_status("b-0", False), now_ms=1500)) == [1]
    assert stage.held == []


def test_the_clock_lets_a_held_flag_go_when_nothing_else_arrives():
    stage = DriftStage(DriftAnalyzer(DriftConfig(flag_hold_ms=500)), "d", "p")
    stage.on_request([0.0], 0, event_time=1)
    stage.on_status({**_status("a-0", True), "as_of": 10**9}, now_ms=1000)
    assert stage.tick(1200) == [] and _drift_positions(stage.tick(1500)) == [1]

"""The drift stage's cold-start round: one HPO trigger after ``cold_start_at`` quiet requests."""

from __future__ import annotations

from fedrift.core.drift import DriftReport
from fedrift.core.drift_stage import DriftStage


class QuietAnalyzer:
    """An analyzer that reports nothing, or a triggered drift at the positions given."""

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

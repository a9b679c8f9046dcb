"""The drift-analyzer stage: inputs from ``inference.requests`` and the hosts' error-drift flags
from ``model.status`` in; ``drift.signals`` after every window, and ``hpo.triggers`` when the
trigger policy fires.

Nobody knows the right hyperparameters at start-up either: once ``cold_start_at`` requests have
passed without a drift trigger, one round is triggered anyway (``reason`` "cold start").

Round ids are ``<round_prefix>-<position>-<n>``: the prefix tells apart the rounds of two runs of
the analyzer (a restart counts positions from zero again), the counter two triggers of one run.

>>> stage = DriftStage(DriftAnalyzer(), name="drift", round_prefix="p")
>>> stage.on_status({"error_drift": False, "window_quality": 0.9}, now_ms=0)
[]
"""

from __future__ import annotations

import logging
import math

from fedrift.core.drift import DriftAnalyzer, DriftReport
from fedrift.core.records import Output
from fedrift.topics import DRIFT_SIGNALS, HPO_TRIGGERS
from schemas import InvalidRecord
from schemas.records import DriftSignal, HpoTrigger, ModelStatus

log = logging.getLogger(__name__)


class DriftStage:
    def __init__(self, analyzer: DriftAnalyzer, name: str, round_prefix: str, cold_start_at: int = 0) -> None:
        self.analyzer, self.name, self.round_prefix = analyzer, name, round_prefix
        self.cold_start_at = cold_start_at  # requests before the cold-start round; 0 = none
        self.triggers = 0
        self.requests = 0

    def on_request(self, features: list[float], now_ms: int) -> list[Output]:
        self.requests += 1
        report = self.analyzer.update(features)
        out = [] if report is None else self._publish(report, now_ms)
        if self.requests == self.cold_start_at and self.triggers == 0:
            out.append(self._trigger(self.requests, "cold start", 0.0, now_ms))
        return out

    def on_status(self, status: ModelStatus, now_ms: int) -> list[Output]:
        if not status["error_drift"]:
            return []
        report = self.analyzer.outcome_drift({"error_drift_host": 1.0, "window_quality": status["window_quality"]})
        return self._publish(report, now_ms)

    def _publish(self, report: DriftReport, now_ms: int) -> list[Output]:
        signal: DriftSignal = {
            "analyzer": self.name,
            "time": now_ms,
            "position": report.position,
            "score": report.score,
            "threshold": report.threshold if report.threshold < float("inf") else -1.0,
            "drifted": report.triggered,
            "source": report.source,
            "components": report.components,
            "top_features": [{"feature": f, "shift": s} for f, s in report.top_features],
        }
        out = [Output(DRIFT_SIGNALS, "DriftSignal", signal, self.name)]
        if report.triggered:
            out.append(self._trigger(report.position, f"{report.source} drift", report.score, now_ms))
        return out

    def _trigger(self, position: int, reason: str, score: float, now_ms: int) -> Output:
        self.triggers += 1
        round_id = f"{self.round_prefix}-{position}-{self.triggers}"
        trigger: HpoTrigger = {"round_id": round_id, "time": now_ms, "reason": reason, "drift_score": score,
                               "models": []}
        log.info("%s at %d (score %.2f): HPO %s", reason, position, score, round_id)
        return Output(HPO_TRIGGERS, "HpoTrigger", trigger, "*")


def validate_trigger(trigger: HpoTrigger) -> None:
    """Refuse a trigger no round can be run for (control records are validated on read)."""
    if not trigger["round_id"]:
        raise InvalidRecord("HpoTrigger has an empty round_id")
    if not math.isfinite(trigger["drift_score"]):
        raise InvalidRecord(f"drift_score {trigger['drift_score']} is not finite")

"""The drift-analyzer stage: inputs from ``inference.requests`` and the hosts' error-drift flags
from ``model.status`` in; ``drift.signals`` after every window, and ``hpo.triggers`` when the
trigger policy fires.

Nobody knows the right hyperparameters at start-up either: once ``cold_start_at`` requests have
passed without a drift trigger, one round is triggered anyway (``reason`` "cold start").

A host's error-drift flag triggers only once ``error_quorum`` hosts have flagged within
``error_quorum_window`` requests. One (the default) keeps every detector's sensitivity: a mild
drift may raise one replica's error only (SEA's second concept change: one of nine detectors).
More suits a large fleet, where one replica's bad spell (a tree's poor split) raises lone alarms
that an abrupt concept change, raising every model's error at once, would not need.

A flag is placed at the request its status was made after: a status says up to which request
time its host had learned (``as_of``), and a flag from further on than the inputs the analyzer
has read waits for them (at most ``flag_hold_ms`` of wall time, counted by ``tick`` too), as in
the simulator, where each status follows the request it was made after. A flag from behind the
inputs read so far is placed at its request too, up to one window back (the analyzer keeps the
last window's inputs: those after the flag start the new reference, so the windows after the
trigger do not depend on how late the flag came); from further back, where the inputs are.
Request times are the clients' ``event_time``: one far in the future lets every later flag
through at once (placed as before the hold), and held flags live in memory (an analyzer that
restarts loses them, as it loses its windows).

Round ids are ``<round_prefix>-<position>-<n>``: the prefix tells apart the rounds of two runs of
the analyzer (a restart counts positions from zero again), the counter two triggers of one run.

>>> from fedrift.core.drift import DriftConfig
>>> stage = DriftStage(DriftAnalyzer(DriftConfig(error_quorum=2)), name="drift", round_prefix="p")
>>> stage.on_status({"host": "a-0", "error_drift": False, "window_quality": 0.9}, now_ms=0)
[]
>>> stage.on_status({"host": "b-0", "error_drift": True, "window_quality": 0.7}, now_ms=0)  # alone
[]
>>> [o.record for o in stage.on_status({"host": "a-0", "error_drift": True, "window_quality": 0.7}, now_ms=0)]
['DriftSignal', 'HpoTrigger']
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from fedrift.core.drift import DriftAnalyzer, DriftReport
from fedrift.core.records import Output
from fedrift.topics import DRIFT_SIGNALS, HPO_TRIGGERS
from schemas import InvalidRecord
from schemas.records import DriftSignal, HpoTrigger, ModelStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


class DriftStage:
    def __init__(self, analyzer: DriftAnalyzer, name: str, round_prefix: str, cold_start_at: int = 0) -> None:
        self.analyzer, self.name, self.round_prefix = analyzer, name, round_prefix
        self.cold_start_at = cold_start_at  # requests before the cold-start round; 0 = none
        self.triggers = 0
        self.requests = 0
        self.as_of = -1  # the newest request event time seen: the data a trigger's round tunes on
        self.hosts: set[str] = set()  # hosts that have reported
        self.flags: dict[str, int] = {}  # host -> request count at its latest error-drift flag
        self.held: list[tuple[ModelStatus, int]] = []  # (flag, when it came) from beyond the inputs read
        # (event time, features) of the last window's inputs the analyzer took: a late flag's place
        self.recent: deque[tuple[int, list[float]]] = deque(maxlen=analyzer.config.window)

    def on_request(self, features: list[float], now_ms: int, event_time: int = -1) -> list[Output]:
        self.requests += 1
        self.as_of = max(self.as_of, event_time)
        read = self.analyzer.position
        report = self.analyzer.update(features)
        if self.analyzer.position > read:  # taken (an unusable input is not)
            self.recent.append((event_time, features))
        out = [] if report is None else self._publish(report, now_ms)
        if self.requests == self.cold_start_at and self.triggers == 0:
            out.append(self._trigger(self.requests, "cold start", 0.0, now_ms))
        return out + self._reached(now_ms)

    def on_status(self, status: ModelStatus, now_ms: int) -> list[Output]:
        self.hosts.add(status["host"])
        if status["error_drift"]:
            self.held.append((status, now_ms))
        return self._reached(now_ms)

    def tick(self, now_ms: int) -> list[Output]:
        """The clock: a held flag is let go after ``flag_hold_ms`` even if nothing else arrives."""
        return self._reached(now_ms)

    def _reached(self, now_ms: int) -> list[Output]:
        """The held flags the inputs have reached (or that waited ``flag_hold_ms``), in arrival order."""
        if not self.held:
            return []
        oldest = now_ms - self.analyzer.config.flag_hold_ms
        due, self.held = split_by(self.held, lambda h: h[0].get("as_of", -1) <= self.as_of or h[1] <= oldest)
        return [o for s, _ in due for o in self._flag(s, now_ms)]

    def _flag(self, status: ModelStatus, now_ms: int) -> list[Output]:
        host = status["host"]
        cfg = self.analyzer.config
        self.flags[host] = self.requests
        agreeing = sum(self.requests - at <= cfg.error_quorum_window for at in self.flags.values())
        if agreeing < min(cfg.error_quorum, len(self.hosts)):
            log.info("%s reports error drift at request %d: %d of %d host(s) agree", host, self.requests,
                     agreeing, cfg.error_quorum)
            return []
        self.flags.clear()
        report = self.analyzer.outcome_drift({"error_drift_hosts": float(agreeing),
                                              "window_quality": status["window_quality"]},
                                             self._read_since(status.get("as_of", -1)))
        log.info("%s reports error drift at %d, %d host(s) agree (%s)", host, report.position, agreeing,
                 "trigger" if report.triggered else "within the cooldown")
        return self._publish(report, now_ms)

    def _read_since(self, as_of: int) -> list[list[float]]:
        """The inputs read after the request of time ``as_of``, if it is among the recent ones."""
        since: list[list[float]] = []
        for t, x in reversed(self.recent):
            if t <= as_of:
                return since[::-1]
            since.append(x)
        return []  # further back than the recent inputs: placed where they are

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
                               "models": [], "as_of": self.as_of,
                               "design": f"{self.analyzer.seed}-{self.triggers}"}
        log.info("%s at %d (score %.2f): HPO %s", reason, position, score, round_id)
        return Output(HPO_TRIGGERS, "HpoTrigger", trigger, "*")


def split_by(items: list[T], keep: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """``items`` split into those ``keep`` accepts and the rest, each in order."""
    yes: list[T] = []
    no: list[T] = []
    for item in items:
        (yes if keep(item) else no).append(item)
    return yes, no


def validate_trigger(trigger: HpoTrigger) -> None:
    """Refuse a trigger no round can be run for (control records are validated on read)."""
    if not trigger["round_id"]:
        raise InvalidRecord("HpoTrigger has an empty round_id")
    if not math.isfinite(trigger["drift_score"]):
        raise InvalidRecord(f"drift_score {trigger['drift_score']} is not finite")

"""The shadow-evaluation stage: ``shadow.results`` and ``deployments`` in, PROMOTE / REJECT out.

One ``ShadowEvaluator`` per model whose shadow is running (started by SHADOW_START); each paired
result (production and shadow answer on the same labelled request) is counted once per request
id; the first decision ends the test.

>>> stage = ShadowStage(min_samples=1, max_samples=2)
>>> stage.on_deployment({"model": "m", "action": "SHADOW_START", "config_id": "c2", "config_json": "{}",
...                      "round_id": "r1"})
>>> result = {"model": "m", "shadow_config_id": "c2", "label": 1, "production_prediction": 0,
...           "shadow_prediction": 1}
>>> stage.on_result({**result, "request_id": "a"}, now_ms=0), stage.on_result({**result, "request_id": "a"}, 0)
([], [])
>>> [o.value["action"] for o in stage.on_result({**result, "request_id": "b"}, now_ms=0)]
['REJECT']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from fedrift.core.controller import deployment
from fedrift.core.lifecycle import Action, new_deployment
from fedrift.core.records import Output
from fedrift.core.shadow import ShadowEvaluator
from schemas import InvalidRecord
from schemas.records import Deployment, ShadowResult

log = logging.getLogger(__name__)


def validate_result(r: ShadowResult) -> None:
    """Raise ``InvalidRecord`` for a paired result that cannot be counted."""
    for name in ("production_latency_ms", "shadow_latency_ms"):
        if not (math.isfinite(r[name]) and r[name] >= 0):
            raise InvalidRecord(f"{name} {r[name]} is not a finite non-negative number")


class ShadowStage:
    def __init__(
        self,
        alpha: float = 0.05,
        min_samples: int = 200,
        max_samples: int = 5000,
        deployments: Iterable[Deployment] = (),
    ) -> None:
        self.alpha, self.min_samples, self.max_samples = alpha, min_samples, max_samples
        self.active: dict[str, tuple[Deployment, ShadowEvaluator, set[str]]] = {}
        for d in deployments:
            self.on_deployment(d)

    def on_deployment(self, d: Deployment) -> None:
        action = Action.of(d)
        if action is Action.SHADOW_START:
            ev = ShadowEvaluator(self.alpha, self.alpha, self.min_samples, self.max_samples)
            self.active[d["model"]] = (d, ev, set())
        elif action in (Action.PROMOTE, Action.REJECT):
            self.active.pop(d["model"], None)

    def on_result(self, r: ShadowResult, now_ms: int) -> list[Output]:
        if r["label"] is None or r["model"] not in self.active:
            return []
        start, ev, seen = self.active[r["model"]]
        if r["request_id"] in seen or r["shadow_config_id"] != start["config_id"]:
            return []
        seen.add(r["request_id"])
        decision = ev.update(r["production_prediction"] == r["label"], r["shadow_prediction"] == r["label"])
        if decision is None:
            return []
        del self.active[r["model"]]
        log.info("shadow %s for %s: %s (%s)", start["config_id"], r["model"], decision.action, decision.reason)
        value = new_deployment(
            r["model"], Action(decision.action.upper()), start["config_id"], now_ms, decision.reason,
            {k: float(v) for k, v in decision.evidence.items()},
            config_json=start["config_json"], round_id=start["round_id"],
        )
        return [deployment(value)]

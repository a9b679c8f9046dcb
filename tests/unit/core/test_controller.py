"""The controller stage through its records: statuses → Fixed Share evidence → weights markers."""

import math

import pytest

from fedrift.core.controller import Controller, ControllerConfig
from schemas import InvalidRecord


def _controller(**kw) -> Controller:
    return Controller(ControllerConfig(pool=("linear", "hat"), partitions=3), **kw)


def _status(host: str, model: str, seen: int, correct: int, quality: float = 0.5) -> dict:
    return {"host": host, "model": model, "n_seen": seen, "n_correct": correct, "window_quality": quality,
            "input_sketch": []}


def test_counters_are_differenced_per_host_and_fed_once_every_model_scored():
    ctl = _controller()
    for host, model in (("linear-0", "linear"), ("linear-1", "linear"), ("hat-0", "hat")):
        ctl.on_status(_status(host, model, 100, 50), 0)  # baselines
    ctl.on_status(_status("linear-0", "linear", 300, 230), 0)  # +200 scored, +180 right
    ctl.on_status(_status("linear-1", "linear", 300, 230), 0)
    assert ctl.controller.evidence.p == {}  # hat has not been scored yet: wait
    out = ctl.on_status(_status("hat-0", "hat", 500, 250), 0)  # +400 scored, +200 right: every model has news
    assert ctl.batch == {} and out and out[-1].value["version"] == 1
    w = ctl.controller.evidence.weights()
    # linear 90 % vs hat 50 % over min(400, 400) events
    assert w["linear"] > 0.99 and w["hat"] == pytest.approx(1 - w["linear"])


def test_a_restarted_host_sets_a_new_baseline():
    ctl = _controller()
    ctl.on_status(_status("hat-0", "hat", 1000, 900), 0)
    ctl.on_status(_status("hat-0", "hat", 200, 100), 0)  # counters went back: no negative batch
    assert ctl.batch == {}
    ctl.on_status(_status("hat-0", "hat", 300, 190), 0)
    assert ctl.batch == {"hat": [90, 100]}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"window_quality": 1.5}, "outside"),
        ({"window_quality": math.nan}, "outside"),
        ({"n_seen": -1}, "impossible"),
        ({"n_correct": 10**12}, "impossible"),
        ({"input_sketch": [math.inf]}, "non-finite"),
    ],
)
def test_an_impossible_status_is_refused_and_changes_nothing(change, why):
    ctl = _controller()
    ctl.on_status(_status("hat-0", "hat", 100, 50), 0)
    with pytest.raises(InvalidRecord, match=why):
        ctl.on_status({**_status("hat-0", "hat", 200, 100), **change}, 0)
    assert ctl.status["hat-0"]["n_seen"] == 100


def test_weights_are_published_as_one_marker_per_partition_then_on_routing_weights():
    ctl = _controller()
    for host, model, correct in (("linear-0", "linear", 90), ("hat-0", "hat", 50)):
        ctl.on_status(_status(host, model, 0, 0), 0)
        out = ctl.on_status(_status(host, model, 100, correct, correct / 100), now_ms=5)
    assert [(o.topic, o.partition) for o in out] == [("inference.requests", p) for p in range(3)] + [
        ("routing.weights", None)
    ]
    assert len({id(o.value) for o in out}) == 1 and out[0].value["version"] == 1
    assert ctl.tick(now_ms=6) == []  # evidence came just now: the clock waits
    assert ctl.tick(now_ms=5000) == []  # nothing moved: no new version


def test_a_restored_controller_continues_the_versions_and_the_evidence():
    stored = {"version": 7, "weights": {"linear": 0.9, "hat": 0.1}, "historical": {"linear": 0.9, "hat": 0.1}}
    ctl = _controller(weights=stored, deployments=[{"model": "hat", "action": "PRUNE", "reason": "weak"}])
    assert ctl.controller.version == 7 and ctl.pruned == {"hat": "weak"}
    assert ctl.controller.evidence.weights()["linear"] == pytest.approx(0.9)


def test_a_shadow_start_carries_no_score_of_the_round_to_the_hosts():
    """Hosts read ``deployments``; the round's (secure-aggregated) scores must not travel there:
    hosts that subtract their own values from a sum are left with their peers' under less noise."""
    from tests.samples import SAMPLES

    ctl = Controller(ControllerConfig(pool=("hat", "linear"), partitions=3))
    aggregate = {**SAMPLES["AggregateResult"], "score": 0.8123456, "score_std": 0.0234567}
    [out] = ctl.on_aggregate(aggregate, now_ms=5)
    assert out.value["action"] == "SHADOW_START" and out.value["config_id"] == "c2"
    assert out.value["evidence"] == {}
    text = repr(out.value)
    assert "0.81" not in text and "0.023" not in text

import numpy as np

from fedrift.core.drift import DriftAnalyzer, DriftConfig, ErrorDriftDetector, TriggerPolicy


def _feed(analyzer, rows, errors=None):
    reports = []
    for i, x in enumerate(rows):
        r = analyzer.update(list(x), None if errors is None else int(errors[i]))
        if r is not None:
            reports.append(r)
    return reports


def test_stable_stream_false_alarms_stay_near_the_configured_rate():
    rng = np.random.default_rng(3)
    cfg = DriftConfig(false_alarm_rate=0.02)
    reports = _feed(DriftAnalyzer(cfg, seed=3), rng.normal(size=(60_000, 4)))
    windows = [r for r in reports if r.source != "error"]
    over = sum(r.score > r.threshold for r in windows) / len(windows)
    assert over <= 3 * cfg.false_alarm_rate
    assert not any(r.triggered for r in reports)


def test_covariate_shift_is_detected_quickly_once_and_names_the_feature():
    rng = np.random.default_rng(4)
    stable = rng.normal(size=(5000, 5))
    shifted = rng.normal(size=(5000, 5))
    shifted[:, 2] += 1.0
    analyzer = DriftAnalyzer(DriftConfig(), seed=4, feature_names=list("abcde"))
    reports = _feed(analyzer, np.vstack([stable, shifted]))
    triggers = [r for r in reports if r.triggered]
    assert len(triggers) == 1  # hysteresis + a new reference: one drift, one trigger
    assert 5000 < triggers[0].position <= 5000 + 3 * analyzer.config.window
    assert triggers[0].source == "input" and triggers[0].top_features[0][0] == "c"
    assert triggers[0].score > triggers[0].threshold


def test_concept_drift_is_caught_from_errors_only():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8000, 3))  # inputs never change
    errors = np.concatenate([rng.random(4000) < 0.1, rng.random(4000) < 0.4])
    reports = _feed(DriftAnalyzer(DriftConfig(), seed=5), x, errors)
    triggers = [r for r in reports if r.triggered]
    assert [t.source for t in triggers] == ["error"]
    assert 4000 < triggers[0].position < 4600


def test_error_detector_ignores_improvements():
    det = ErrorDriftDetector()
    rng = np.random.default_rng(0)
    fired = [det.update(int(e)) for e in np.concatenate([rng.random(3000) < 0.4, rng.random(3000) < 0.05])]
    assert not any(fired)


def test_trigger_policy_hysteresis_and_cooldown():
    p = TriggerPolicy(confirm=2, release=0.8, cooldown=1000)
    assert not p.input_window(100, 5.0, 1.0)  # first window over: not yet
    assert p.input_window(200, 5.0, 1.0)  # confirmed
    assert not p.input_window(300, 5.0, 1.0) and not p.input_window(400, 5.0, 1.0)  # disarmed
    assert not p.error_drift(900)  # cooldown
    p.input_window(1300, 0.5, 1.0)  # falls below release: re-armed
    assert not p.input_window(1400, 5.0, 1.0) and p.input_window(1500, 5.0, 1.0)


def test_after_an_error_trigger_the_input_reference_is_relearned():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12_000, 3))
    x[3000:, 0] += 2.0  # first change: inputs and errors together
    x[8000:, 1] += 2.0  # second change: inputs only
    errors = np.concatenate([rng.random(3000) < 0.05, rng.random(9000) < 0.5])
    errors[3000:3050] = True  # the error detector sees the first change at once
    reports = _feed(DriftAnalyzer(DriftConfig(), seed=6), x, errors)
    triggers = [(r.position, r.source) for r in reports if r.triggered]
    assert triggers[0][1] == "error" and 3000 < triggers[0][0] < 3300
    # not stuck above the threshold on the stale reference: the second shift triggers on inputs
    assert any(src == "input" and 8000 < pos <= 8000 + 750 for pos, src in triggers), triggers


def test_unusable_inputs_are_ignored_not_fatal():
    cfg = DriftConfig()
    analyzer = DriftAnalyzer(cfg, seed=0)
    rng = np.random.default_rng(0)
    for i in range(cfg.reference_size + 3 * cfg.window):
        analyzer.update(rng.normal(size=3).tolist())
        if i % 97 == 0:  # NaN, inf, wrong count, empty: skipped, the reference stays usable
            for bad in ([float("nan"), 0.0, 0.0], [0.0, float("inf"), 0.0], [0.0, 1.0], []):
                assert analyzer.update(bad) is None
    assert analyzer.scorer is not None and np.isfinite(analyzer.threshold)
    assert analyzer.position == cfg.reference_size + 3 * cfg.window

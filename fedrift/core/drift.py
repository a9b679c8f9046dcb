"""Drift analysis: input drift (anomaly detectors + per-feature shift against a reference window,
with a bootstrap-calibrated threshold) and concept drift (ADWIN on labelled outcomes), combined by
a trigger policy with hysteresis and a cooldown so one drift gives one HPO trigger.

>>> import random
>>> rnd = random.Random(0)
>>> analyzer = DriftAnalyzer(DriftConfig(reference_size=600, window=200), seed=0)
>>> reports = [analyzer.update([rnd.random(), rnd.random()]) for _ in range(1400)]
>>> [r.triggered for r in reports if r is not None]
[False, False, False, False]
>>> shifted = [analyzer.update([rnd.random() + 2.0, rnd.random()]) for _ in range(600)]
>>> any(r.triggered for r in shifted if r is not None)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from river import anomaly, drift


@dataclass(frozen=True)
class DriftConfig:
    """Analyzer settings. Defaults are generic (not tuned to a data set)."""

    reference_size: int = 1000  # first half fits the detectors, second half calibrates the threshold
    window: int = 250  # events per input-drift score
    false_alarm_rate: float = 0.005  # P(one stable window scores above the threshold)
    confirm_windows: int = 2  # hysteresis: consecutive windows above the threshold before a trigger
    release: float = 0.8  # re-arm once the score falls below release * threshold
    cooldown: int = 2000  # events between two triggers
    bootstrap: int = 1000  # bootstrap windows drawn for calibration
    hst_trees: int = 10
    hst_height: int = 8
    pca_variance: float = 0.9
    psi_bins: int = 10
    error_delta: float = 0.002  # ADWIN confidence for the error-rate detector
    error_quorum: int = 1  # hosts whose error detectors must agree before an error-drift trigger ...
    error_quorum_window: int = 1000  # ... within this many requests (fewer hosts known: all of them)
    flag_hold_ms: int = 10_000  # longest an error flag waits for the inputs to reach its request
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.error_quorum < 1:
            raise ValueError(f"FEDRIFT_DRIFT_ERROR_QUORUM={self.error_quorum}: at least 1 host must flag")
        if self.flag_hold_ms < 0:
            raise ValueError(f"FEDRIFT_DRIFT_FLAG_HOLD_MS={self.flag_hold_ms}: must not be negative")
        if self.error_quorum_window < 0:
            raise ValueError(f"FEDRIFT_DRIFT_ERROR_QUORUM_WINDOW={self.error_quorum_window}: must not be negative")


@dataclass
class DriftReport:
    """One drift signal: published at the end of each window and whenever the error detector fires."""

    position: int
    score: float
    threshold: float
    triggered: bool
    source: str  # "input" | "error" | "none"
    components: dict[str, float]
    top_features: list[tuple[str, float]] = field(default_factory=list)


class InputDriftScorer:
    """Fitted on a reference sample; scores windows of inputs by three detectors.

    * ``hst``: mean anomaly score of River's HalfSpaceTrees (inputs scaled to [0, 1] by the reference range),
    * ``pca``: mean reconstruction error of a PCA "linear autoencoder" fitted on the reference,
    * ``psi``: the largest per-feature population stability index against reference quantile bins.

    Each statistic is standardised by its bootstrap distribution on held-out reference data; the
    window's score is the largest standardised statistic, and the threshold is the bootstrap
    ``1 - false_alarm_rate`` quantile of that maximum, so the false-alarm rate holds for all three.
    """

    def __init__(self, reference: np.ndarray, config: DriftConfig, seed: int = 0) -> None:
        self.config = config
        half = len(reference) // 2
        fit, calib = reference[:half], reference[half:]
        self.lo = np.quantile(fit, 0.01, axis=0)
        self.hi = np.quantile(fit, 0.99, axis=0)
        self.hst = anomaly.HalfSpaceTrees(
            n_trees=config.hst_trees, height=config.hst_height, window_size=max(half // 2, 50), seed=seed
        )
        for row in self._unit(fit):
            self.hst.learn_one(dict(enumerate(row)))
        self.mean = fit.mean(axis=0)
        self.std = np.where(fit.std(axis=0) > 1e-12, fit.std(axis=0), 1.0)
        z = (fit - self.mean) / self.std
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        explained = np.cumsum(s**2) / max(np.sum(s**2), 1e-12)
        k = int(np.searchsorted(explained, config.pca_variance) + 1)
        self.components = vt[: min(k, max(z.shape[1] - 1, 1))]
        self.edges = [
            np.unique(np.quantile(fit[:, j], np.linspace(0, 1, config.psi_bins + 1)[1:-1])) for j in range(fit.shape[1])
        ]
        self.ref_hist = np.stack([self._hist(fit[:, j], j) for j in range(fit.shape[1])])
        self._calibrate(calib, np.random.default_rng(seed))

    def _unit(self, X: np.ndarray) -> np.ndarray:
        span = np.where(self.hi - self.lo > 1e-12, self.hi - self.lo, 1.0)
        return np.clip((X - self.lo) / span, 0.0, 1.0)

    def _hist(self, col: np.ndarray, j: int) -> np.ndarray:
        bins = self.config.psi_bins
        counts = np.bincount(np.searchsorted(self.edges[j], col, side="right"), minlength=bins)[:bins]
        return (counts + 0.5) / (len(col) + 0.5 * bins)

    def _event_scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hst = np.array([self.hst.score_one(dict(enumerate(r))) for r in self._unit(X)])
        z = (X - self.mean) / self.std
        recon = z @ self.components.T @ self.components
        pca = np.mean((z - recon) ** 2, axis=1)
        bins = np.stack([np.searchsorted(self.edges[j], X[:, j], side="right") for j in range(X.shape[1])], axis=1)
        return hst, pca, bins

    def _psi(self, bins: np.ndarray) -> np.ndarray:
        n_bins = self.config.psi_bins
        cur = np.stack([np.bincount(bins[:, j], minlength=n_bins)[:n_bins] for j in range(bins.shape[1])])
        cur = (cur + 0.5) / (bins.shape[0] + 0.5 * n_bins)
        return np.sum((cur - self.ref_hist) * np.log(cur / self.ref_hist), axis=1)

    def _raw(self, hst, pca, bins) -> tuple[np.ndarray, np.ndarray]:
        psi = self._psi(bins)
        return np.array([hst.mean(), pca.mean(), psi.max()]), psi

    def _calibrate(self, calib: np.ndarray, rng: np.random.Generator) -> None:
        hst, pca, bins = self._event_scores(calib)
        w = self.config.window
        stats = np.empty((self.config.bootstrap, 3))
        for b in range(self.config.bootstrap):
            idx = rng.integers(0, len(calib), size=w)
            stats[b] = self._raw(hst[idx], pca[idx], bins[idx])[0]
        self.stat_mean = stats.mean(axis=0)
        self.stat_std = np.where(stats.std(axis=0) > 1e-12, stats.std(axis=0), 1e-12)
        max_z = ((stats - self.stat_mean) / self.stat_std).max(axis=1)
        self.threshold = float(np.quantile(max_z, 1.0 - self.config.false_alarm_rate))

    def score(self, window: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
        """Return (score, standardised components, per-feature PSI) for one window of inputs."""
        raw, psi = self._raw(*self._event_scores(window))
        z = (raw - self.stat_mean) / self.stat_std
        return float(z.max()), {"hst": float(z[0]), "pca": float(z[1]), "psi": float(z[2])}, psi


class ErrorDriftDetector:
    """ADWIN on the 0/1 error of labelled outcomes; fires only when the error rate went *up*."""

    def __init__(self, delta: float = 0.002) -> None:
        self.delta = delta
        self.adwin = drift.ADWIN(delta=delta)

    def update(self, error: int) -> bool:
        before = self.adwin.estimation
        self.adwin.update(error)
        return bool(self.adwin.drift_detected and self.adwin.estimation > before)

    @property
    def error_rate(self) -> float:
        return float(self.adwin.estimation)


class TriggerPolicy:
    """Hysteresis and cooldown: ``confirm`` windows in a row above the threshold, re-armed only once
    the score falls below ``release * threshold``, and never two triggers within ``cooldown`` events."""

    def __init__(self, confirm: int, release: float, cooldown: int) -> None:
        self.confirm, self.release, self.cooldown = confirm, release, cooldown
        self.streak = 0
        self.armed = True
        self.last = -math.inf

    def input_window(self, position: int, score: float, threshold: float) -> bool:
        self.streak = self.streak + 1 if score > threshold else 0
        if not self.armed and score < self.release * threshold:
            self.armed = True
        return self.armed and self.streak >= self.confirm and self._fire(position)

    def error_drift(self, position: int) -> bool:
        return self._fire(position)

    def _fire(self, position: int) -> bool:
        if position - self.last < self.cooldown:
            return False
        self.last = position
        self.armed = False
        self.streak = 0
        return True


class DriftAnalyzer:
    """Watches inputs (and errors, when labels arrive) and reports drift; see the module docstring.

    The first ``reference_size`` events are the reference. After any trigger (input or error), the
    next ``reference_size`` events become the new reference, so the analyzer follows the new regime.
    """

    def __init__(self, config: DriftConfig | None = None, seed: int = 0, feature_names: list[str] | None = None):
        self.config = config or DriftConfig()
        self.seed = seed
        self.feature_names = feature_names
        self.position = 0
        self.scorer: InputDriftScorer | None = None
        self._reference: list[list[float]] = []
        self._window: list[list[float]] = []
        self.errors = ErrorDriftDetector(self.config.error_delta)
        self.policy = TriggerPolicy(self.config.confirm_windows, self.config.release, self.config.cooldown)
        self.last_score = 0.0
        self._n_features: int | None = None

    @property
    def threshold(self) -> float:
        return self.scorer.threshold if self.scorer else math.inf

    def update(self, x: list[float], error: int | None = None) -> DriftReport | None:
        """Feed one event (and its 0/1 error if labelled); returns a report at window ends and on error drift.
        An input that cannot be used (non-finite, or another feature count than the first) is
        ignored: the router dead-letters it, and one NaN in the reference would break the PCA."""
        if not x or not all(map(math.isfinite, x)) or (self._n_features is not None and len(x) != self._n_features):
            return None
        self._n_features = len(x)
        self.position += 1
        report = None
        if error is not None and self.errors.update(int(error)):
            report = self.outcome_drift()
        if self.scorer is None:
            self._reference.append(list(x))
            if len(self._reference) >= self.config.reference_size:
                self.scorer = InputDriftScorer(np.asarray(self._reference, dtype=float), self.config, self.seed)
                self._reference = []
            return report
        self._window.append(list(x))
        if len(self._window) < self.config.window:
            return report
        score, comps, psi = self.scorer.score(np.asarray(self._window, dtype=float))
        threshold = self.scorer.threshold
        self._window = []
        self.last_score = score
        triggered = self.policy.input_window(self.position, score, threshold)
        if triggered:
            self.scorer = None  # learn the new regime as the next reference
        if report is not None and report.triggered:
            return report
        return self._report(score, threshold, triggered, "input" if triggered else "none", comps, psi)

    def outcome_drift(self, components: dict[str, float] | None = None,
                      since: list[list[float]] | None = None) -> DriftReport:
        """Concept drift seen in outcomes (here by ADWIN, or reported by a host): trigger if the
        policy allows, and then learn a new input reference too — otherwise an input shift that
        came with this drift would keep the input score above the threshold for good. ``since``:
        the inputs read after the request that raised it (a flag that came late); the drift is
        placed before them and they start the new reference, so where the analyzer had read to
        when the flag came changes neither the trigger's position nor the windows after it."""
        since = since or []
        position = self.position - len(since)
        triggered = self.policy.error_drift(position)
        threshold = self.threshold
        if triggered and self.scorer is not None:
            self.scorer, self._window = None, []
            self._reference = [list(x) for x in since]
        return self._report(
            self.last_score, threshold, triggered, "error" if triggered else "none", components or {}, None, position
        )

    def _report(self, score, threshold, triggered, source, comps, psi, position: int | None = None) -> DriftReport:
        comps = {**comps, "error_rate": self.errors.error_rate}
        top: list[tuple[str, float]] = []
        if psi is not None:
            names = self.feature_names or [f"x{i}" for i in range(len(psi))]
            order = np.argsort(psi)[::-1][: self.config.top_k]
            top = [(names[i], float(psi[i])) for i in order]
        return DriftReport(self.position if position is None else position, score, threshold, triggered, source,
                           comps, top)

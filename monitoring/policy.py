"""The monitoring policy: when drift or quality decay counts, and when that calls for a retrain.

Why apart from the Evidently code: the thresholds are a team's decision, kept in ``params.yaml``
(``defaults.monitoring``, overridden per model under ``models.<name>.monitoring``; DVC-tracked),
and the decision rule is plain logic that unit tests can pin down without running a report.
Evidently measures; this module decides.

**Drift on windows of a trustworthy size.** A drift distance measured on a sample is never 0 on a
quiet day: it is sampling noise, and it grows as the window shrinks. The fixed thresholds (0.1)
were tuned where a day holds ~1,700 rows. ``benchmarks/monitoring_trust.py`` runs the real check
over 5 seeds x {no shift, spending_change, new_fraud_pattern} x {700, 1,700, 17,000} transactions
a day (14 quiet days, then 14 of the shift): with the fixed thresholds on one day, 17 of 140 quiet
days at 700 a day were drift (12.1%; 0 of 140 at 1,700 and at 17,000, where every shift was caught
on its first day). Two things make a small window trustworthy, both here:

1. **A minimum window** (``min_window_rows``, ``max_window_days``): a day with fewer rows is
   checked together with the days before it, back until the window holds 1,400 rows (700 a day:
   two or three days). The noise is then close to that of a 1,700-row day, which the thresholds
   were tuned for; 1,700 a day (its lowest day in the benchmark: 1,493 rows) never pools. Why this
   first: rows of one day are not independent (a merchant's features are one snapshot repeated
   for each of its transactions that day, fraud comes in bursts), so a 700-row day is noisier
   than 700 independent rows, and no threshold fitted to it separates noise from a real change
   as well as more rows do. The cost is dilution: the first
   shifted day is a half or a third of a 700-a-day window, so a shift can be seen a day later; at
   1,700 and 17,000 a day the window is the day itself and nothing changes.
2. **Thresholds that know the window's size** (``noise_sigmas``): each distance test's threshold
   rises, never falls, to the noise the champion's own reference shows at the window's size::

       threshold = max(policy threshold, (mean + noise_sigmas * sd) * size_term(n_ref, n_cur))

   where mean and sd are over the reference's own days, each scored against the rest of the
   reference by the column's own Evidently test and divided by its size term (``ColumnNoise``;
   monitoring/reports.py ``reference_noise``): sqrt(1/n_ref + 1/n_cur) for a distance
   (Wasserstein, Jensen-Shannon, Hellinger, energy), 1/n_ref + 1/n_cur for a divergence (PSI,
   KL). The demo's features measured 1.0-1.9 of those units on average (a normal sample of
   independent rows: ~0.9), the model's score 0.7-1.0. Alone, on single 700-row days, it cut the
   false alarms from 17 to 11 of 140 (the model's scores on the reference are in-sample, and quiet
   days scatter more than its days do); at 500 rows it held a spending shift's first day to 4 of
   24 drifted features, a day late. With the minimum window it is a guard for columns noisier
   than the rest (a window of the maximum days that still holds few rows, a heavy tail). "max"
   and not "threshold + noise": where the window is big enough the team's threshold keeps meaning
   what it says (an effect of that size). p-value tests (ks, chisquare, ...) already account for
   the sample size and are left alone. ``noise_sigmas: 0`` gives the fixed thresholds back.

The README ("Monitoring you can trust") has the whole table, with these policies side by side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Evidently's names for the drift methods a policy may pick (evidently.legacy.calculations.stattests).
DriftMethod = Literal[
    "wasserstein", "psi", "kl_div", "jensenshannon", "hellinger", "ks", "chisquare", "z",
    "anderson", "cramer_von_mises", "mannw", "t_test", "energy_distance", "TVD", "g_test",
]
# Which of them measure a distance (drift: above the threshold), and which of those a divergence,
# whose sampling noise shrinks like 1/n rather than 1/sqrt(n); the others are p-value tests.
DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon", "hellinger", "energy_distance", "psi",
                              "kl_div"})
DIVERGENCE_METHODS = frozenset({"psi", "kl_div"})
QualityMetric = Literal["average_precision", "precision", "recall", "roc_auc", "rmse", "mae", "r2"]
Direction = Literal["max", "min"]
# Which way each quality metric is better: decay is a move the other way.
QUALITY_DIRECTION: dict[str, Direction] = {
    "average_precision": "max", "precision": "max", "recall": "max", "roc_auc": "max",
    "rmse": "min", "mae": "min", "r2": "max",
}


class DriftTest(BaseModel):
    """One drift test: Evidently's method and its threshold (a distance, or a p-value)."""

    model_config = ConfigDict(extra="forbid")

    method: DriftMethod
    threshold: float = Field(gt=0.0)


class DriftPolicy(BaseModel):
    """Data drift of the model's inputs and of its scores, reference vs current window."""

    model_config = ConfigDict(extra="forbid")

    numerical: DriftTest = DriftTest(method="wasserstein", threshold=0.1)
    categorical: DriftTest = DriftTest(method="jensenshannon", threshold=0.1)
    # per-feature overrides, by column name
    columns: dict[str, DriftTest] = {}
    # a numerical column with at most this many distinct reference values is treated as categorical
    max_categories: int = Field(10, ge=2)
    drift_share: float = Field(0.2, gt=0.0, le=1.0)  # share of drifted features that is "drift"
    prediction: DriftTest = DriftTest(method="wasserstein", threshold=0.1)
    prediction_drift_counts: bool = True  # drift of the scores alone also counts as drift
    # rows per side, sampled uniformly when a window is larger (see monitoring/reports.py)
    max_rows: int = Field(100_000, ge=1000)
    min_current_rows: int = Field(200, ge=1)
    # a day with fewer rows is checked together with the days before it, back until the window
    # holds min_window_rows (at most max_window_days days): see the module doc
    min_window_rows: int = Field(1400, ge=1)
    max_window_days: int = Field(7, ge=1)
    # sample-size-aware thresholds (module doc): how many standard deviations above the mean of
    # the reference's own quiet days a distance may reach at today's size before the threshold
    # rises with it; 0: the fixed thresholds
    noise_sigmas: float = Field(3.0, ge=0.0)
    noise_min_day_rows: int = Field(50, ge=2)  # reference days with fewer rows are not scored

    def test_for(self, column: str, categorical: bool) -> DriftTest:
        """The column's test: its own override, else the one of its type."""
        return self.columns.get(column) or (self.categorical if categorical else self.numerical)


class QualityPolicy(BaseModel):
    """Model quality on the rows whose delayed labels have arrived, vs its validation."""

    model_config = ConfigDict(extra="forbid")

    metric: QualityMetric | None = None  # None: the task's default (average_precision, rmse)
    # Decay: the metric got worse than its validation value (lower, or higher for an error such
    # as rmse) by more than max_drop, in the metric's units, and surely so: the lower end of the
    # bootstrap interval of the drop (both windows resampled) exceeds it. A week of labels holds
    # few positives on either side, and a noisy dip is not decay.
    max_drop: float = Field(0.1, ge=0.0)
    confidence: float = Field(0.9, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(300, ge=50)
    window_days: int = Field(7, ge=1)  # the most recent labelled days the quality is measured on
    min_rows: int = Field(500, ge=1)
    min_positives: int = Field(20, ge=1)  # binary classification only: rows of the positive class


class MonitoringParams(BaseModel):
    """One model's monitoring policy: ``defaults.monitoring`` merged with the model's own."""

    model_config = ConfigDict(extra="forbid")

    experiment_name: str | None = None  # None: "<model>-monitoring"
    current_days: int = Field(1, ge=1)  # the window checked: the run's day and the days before it
    # the reference: the last days of the champion's training set (None: all of it). Rolling 30-day
    # aggregates are still filling up early in a training set; its recent end is the fair baseline.
    reference_days: int | None = Field(14, ge=1)
    drift: DriftPolicy = DriftPolicy()
    quality: QualityPolicy = QualityPolicy()
    retrain_on: list[Literal["drift", "decay"]] = ["drift", "decay"]
    # no new retrain request while the newest registered version was trained this recently
    cooldown_days: int = Field(3, ge=0)


def window_days(policy: DriftPolicy, rows_by_day: list[int], current_days: int = 1) -> int:
    """How many days the drift window spans: `current_days`, and the days before them while it
    holds fewer than ``min_window_rows`` rows (at most ``max_window_days``, and the days there are).

    `rows_by_day` holds the rows of the checked day first, then of each day before it.
    """
    days = min(max(current_days, 1), len(rows_by_day)) if rows_by_day else current_days
    limit = max(policy.max_window_days, current_days)
    while days < min(limit, len(rows_by_day)) and sum(rows_by_day[:days]) < policy.min_window_rows:
        days += 1
    return days


@dataclass(frozen=True)
class ColumnNoise:
    """A drift score's quiet-day noise in the reference, per unit of its size term.

    Each reference day scored against the rest of the reference, divided by
    :func:`size_term` of the two sizes: what is left is the column's own noise level, the same at
    any window size.
    """

    mean: float
    sd: float
    days: int


def size_term(method: str, n_reference: int, n_current: int) -> float:
    """How a distance's sampling noise scales with the two sample sizes (module doc)."""
    inverse = 1.0 / max(n_reference, 1) + 1.0 / max(n_current, 1)
    return inverse if method in DIVERGENCE_METHODS else math.sqrt(inverse)


def noise_threshold(test: DriftTest, noise: ColumnNoise | None, sigmas: float, n_reference: int,
                    n_current: int) -> float:
    """The test's threshold, raised to the noise expected at these sizes (never lowered)."""
    if noise is None or sigmas <= 0 or test.method not in DISTANCE_METHODS:
        return test.threshold
    expected = (noise.mean + sigmas * noise.sd) * size_term(test.method, n_reference, n_current)
    return max(test.threshold, expected)


def drift_thresholds(policy: DriftPolicy, features: list[str], categorical: list[str],
                     noise: dict[str, ColumnNoise], n_reference: int, n_current: int,
                     prediction: str | None = None) -> dict[str, float]:
    """The threshold of each feature (and of the prediction column) for windows of these sizes."""
    out = {c: noise_threshold(policy.test_for(c, c in categorical), noise.get(c), policy.noise_sigmas,
                              n_reference, n_current) for c in features}
    if prediction:
        out[prediction] = noise_threshold(policy.prediction, noise.get(prediction), policy.noise_sigmas,
                                          n_reference, n_current)
    return out


@dataclass(frozen=True)
class DriftFinding:
    """What the drift report measured, reduced to what the decision needs."""

    drifted_columns: list[str]
    n_columns: int
    share: float
    prediction_score: float | None
    prediction_drifted: bool
    share_needed: float  # the policy's drift_share
    scores: dict[str, float] = field(default_factory=dict)  # Evidently's drift score per column
    # the threshold each column's score was held to (features and prediction), when not the policy's
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def dataset_drift(self) -> bool:
        return bool(self.n_columns) and self.share >= self.share_needed


@dataclass(frozen=True)
class QualityFinding:
    """The champion's quality on the labelled window, next to its validation value."""

    metric: str
    value: float | None  # None: too few labelled rows (or positives) yet
    baseline: float | None
    rows: int
    positives: int | None  # rows of the positive class; None for a task without classes
    window: str
    reason: str = ""
    # bootstrap interval of the drop at the policy's confidence; None when the champion's
    # validation scores are not at hand and only the point values are compared
    drop_low: float | None = None
    drop_high: float | None = None

    @property
    def direction(self) -> Direction:
        return QUALITY_DIRECTION[self.metric]

    @property
    def drop(self) -> float | None:
        """How much worse than at validation, in the metric's units (positive: worse)."""
        if self.value is None or self.baseline is None:
            return None
        return quality_drop(self.metric, self.baseline, self.value)


def quality_drop(metric: str, baseline: float, value: float) -> float:
    """baseline - value for a metric where higher is better, value - baseline where lower is."""
    return baseline - value if QUALITY_DIRECTION[metric] == "max" else value - baseline


@dataclass(frozen=True)
class Decision:
    """The record every check ends in: drift? decay? retrain? and why, in words."""

    drift: bool
    decay: bool
    retrain: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_finding(policy: DriftPolicy, drifted: list[str], n_columns: int, scores: dict[str, float],
                  prediction_score: float | None, prediction_drifted: bool,
                  thresholds: dict[str, float] | None = None) -> DriftFinding:
    """Bundle the report's per-column verdicts with the share the policy asks for."""
    share = len(drifted) / n_columns if n_columns else 0.0
    return DriftFinding(drifted_columns=sorted(drifted), n_columns=n_columns, share=share,
                        prediction_score=prediction_score, prediction_drifted=prediction_drifted,
                        share_needed=policy.drift_share, scores=scores, thresholds=thresholds or {})


def decide(params: MonitoringParams, drift: DriftFinding | None, quality: QualityFinding | None,
           cooling_down: str | None = None) -> Decision:
    """Drift, decay and retrain under the policy; `cooling_down` names a too-recent training."""
    reasons: list[str] = []
    is_drift = False
    if drift is None:
        reasons.append("drift: not checked (too few current rows)")
    else:
        if drift.dataset_drift:
            is_drift = True
            reasons.append(
                f"drift: {len(drift.drifted_columns)} of {drift.n_columns} features drifted "
                f"({drift.share:.0%} >= {params.drift.drift_share:.0%}): {', '.join(drift.drifted_columns)}"
            )
        elif drift.drifted_columns:
            reasons.append(
                f"no drift: {len(drift.drifted_columns)} of {drift.n_columns} features drifted "
                f"({drift.share:.0%} < {params.drift.drift_share:.0%}): {', '.join(drift.drifted_columns)}"
            )
        else:
            reasons.append(f"no drift: none of {drift.n_columns} features drifted")
        if drift.prediction_drifted:
            score = f" (score {drift.prediction_score:.3f})" if drift.prediction_score is not None else ""
            if params.drift.prediction_drift_counts:
                is_drift = True
                reasons.append(f"drift: the model's scores drifted{score}")
            else:
                reasons.append(f"the model's scores drifted{score}; policy: does not count")

    is_decay = False
    if quality is None:
        reasons.append("quality: not checked")
    elif quality.value is None:
        reasons.append(f"quality: not measured on {quality.window} ({quality.reason})")
    elif quality.baseline is None:
        reasons.append(f"quality: {quality.metric} {quality.value:.3f} on {quality.window}; "
                       "no validation value to compare with")
    else:
        drop, limit = quality_drop(quality.metric, quality.baseline, quality.value), params.quality.max_drop
        interval = ""
        if quality.drop_low is not None and quality.drop_high is not None:
            is_decay = quality.drop_low > limit
            interval = (f" ({params.quality.confidence:.0%} interval {quality.drop_low:+.3f}.."
                        f"{quality.drop_high:+.3f})")
        else:
            is_decay = drop > limit
        verdict = (f"decay: drop {drop:+.3f}{interval} beyond the limit {limit:.3f}" if is_decay else
                   f"no decay: drop {drop:+.3f}{interval}, not surely beyond the limit {limit:.3f}")
        reasons.append(
            f"{verdict}; {quality.metric} {quality.value:.3f} on {quality.window} "
            f"({_rows(quality)}) vs {quality.baseline:.3f} at validation"
        )

    wanted = ("drift" in params.retrain_on and is_drift) or ("decay" in params.retrain_on and is_decay)
    retrain = wanted and cooling_down is None
    if wanted and cooling_down is not None:
        reasons.append(f"retrain held back: {cooling_down} (cooldown {params.cooldown_days} days)")
    elif retrain:
        reasons.append("retrain: requested")
    return Decision(drift=is_drift, decay=is_decay, retrain=retrain, reasons=reasons)


def _rows(quality: QualityFinding) -> str:
    positives = "" if quality.positives is None else f", {quality.positives} positive"
    return f"{quality.rows} rows{positives}"

"""The champion/challenger rule on score arrays: no MLflow, no models, just the decision."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from glue.errors import GlueError
from glue.promotion import concurrent_change, decide, paired_bootstrap_deltas, point_metrics
from glue.settings import GateParams

# the fraud model's gate in params.yaml (floors are per model: GateParams has none by default)
GATE = GateParams(bootstrap_samples=300, floors={"average_precision": 0.2, "roc_auc": 0.7})
REGRESSION = "regression"
# a regression gate: RMSE, lower is better, by at least half a currency unit
RGATE = GateParams(metric="rmse", min_improvement=0.5, bootstrap_samples=300)


def _scores(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a strong, a weak and a useless score for the same rows.

    Scores are probabilities, as a binary model's predictions are (the gate also shows log loss
    and Brier score): a logistic squash centred on the 8% prior.
    """
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.08).astype(int)
    strong = _proba(y * 1.6 + rng.normal(size=n))
    weak = _proba(y * 0.9 + rng.normal(size=n))
    noise = _proba(rng.normal(size=n))
    return y, strong, weak, noise


def _proba(logit_part: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(logit_part - 2.5)))


def _values(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targets (a spend), a close, a rough and a constant prediction for the same rows."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 50.0, n)
    close = y + rng.normal(scale=10.0, size=n)
    rough = y + rng.normal(scale=25.0, size=n)
    constant = np.full(n, y.mean())
    return y, close, rough, constant


def test_clearly_better_challenger_passes() -> None:
    y, strong, weak, _ = _scores()
    d = decide(y, strong, weak, GATE)
    assert d.passed, d.reason
    assert d.metric == "average_precision" and d.higher_is_better
    assert d.delta is not None and d.delta > GATE.min_improvement
    assert d.prob_better is not None and d.prob_better >= GATE.confidence
    assert d.ci_low is not None and d.ci_high is not None and d.ci_low < d.delta < d.ci_high
    assert "challenger better" in d.reason


def test_worse_challenger_fails_and_says_why() -> None:
    y, strong, weak, _ = _scores()
    d = decide(y, weak, strong, GATE)
    assert not d.passed
    assert d.delta is not None and d.delta < 0
    assert "not better enough" in d.reason and "average_precision" in d.reason


def test_equal_models_are_not_significantly_better() -> None:
    y, strong, _, _ = _scores()
    jitter = np.clip(strong + np.random.default_rng(5).normal(scale=1e-3, size=len(strong)), 1e-6, 1 - 1e-6)
    d = decide(y, jitter, strong, GATE)
    assert not d.passed
    assert d.prob_better is not None and d.prob_better < GATE.confidence


def test_gain_below_min_improvement_fails() -> None:
    y, strong, weak, _ = _scores()
    gain = decide(y, strong, weak, GATE).delta
    assert gain is not None and gain > 0
    gate = GATE.model_copy(update={"min_improvement": gain * 2})  # better, but not by enough
    d = decide(y, strong, weak, gate)
    assert not d.passed
    assert d.prob_better is not None and d.prob_better < 0.5


def test_floors_block_even_a_better_challenger() -> None:
    y, _, weak, noise = _scores()
    gate = GATE.model_copy(update={"floors": {"average_precision": 0.9, "roc_auc": 0.7}})
    d = decide(y, weak, noise, gate)
    assert not d.passed
    assert d.failed_floors and "average_precision" in d.failed_floors[0]
    assert "below floor" in d.reason


def test_first_model_needs_only_the_floors() -> None:
    y, strong, _, noise = _scores()
    first = decide(y, strong, None, GATE)
    assert first.passed and first.champion is None and "first model" in first.reason
    useless = decide(y, noise, None, GATE)
    assert not useless.passed
    assert any(f.startswith("roc_auc") for f in useless.failed_floors)


def test_roc_auc_as_gate_metric() -> None:
    y, strong, weak, _ = _scores()
    d = decide(y, strong, weak, GATE.model_copy(update={"metric": "roc_auc"}))
    assert d.passed and "roc_auc" in d.reason and d.metric == "roc_auc"
    d = decide(y, weak, strong, GATE.model_copy(update={"metric": "roc_auc"}))
    assert not d.passed and "roc_auc" in d.reason


def test_log_loss_as_gate_metric_prefers_lower() -> None:
    y, strong, weak, _ = _scores()
    p_strong, p_weak = strong, weak
    gate = GATE.model_copy(update={"metric": "log_loss", "min_improvement": 0.001})
    d = decide(y, p_strong, p_weak, gate)
    assert d.passed, d.reason
    assert not d.higher_is_better and d.delta is not None and d.delta < 0
    assert not decide(y, p_weak, p_strong, gate).passed


def test_a_binary_ceiling_floor_on_brier_blocks() -> None:
    y, p, _, _ = _scores()
    brier = point_metrics("binary_classification", y, p)["brier"]
    d = decide(y, p, None, GATE.model_copy(update={"floors": {"brier": brier / 2, "roc_auc": 0.7}}))
    assert not d.passed and d.failed_floors and d.failed_floors[0].startswith("brier")
    assert "> ceiling" in d.failed_floors[0]
    assert decide(y, p, None, GATE.model_copy(update={"floors": {"brier": brier * 2}})).passed


def test_regression_lower_rmse_challenger_passes() -> None:
    y, close, rough, _ = _values()
    d = decide(y, close, rough, RGATE, task=REGRESSION)
    assert d.passed, d.reason
    assert d.metric == "rmse" and not d.higher_is_better
    assert d.delta is not None and d.delta < -RGATE.min_improvement  # RMSE went down
    assert d.ci_low is not None and d.ci_high is not None and d.ci_low < d.delta < d.ci_high < 0
    assert d.prob_better is not None and d.prob_better >= RGATE.confidence
    assert "challenger better" in d.reason and "rmse" in d.reason and "P(lower by > 0.5)" in d.reason
    assert set(d.challenger) == set(d.champion or {}) == {"rmse", "mae", "r2"}


def test_regression_worse_challenger_is_rejected() -> None:
    y, close, rough, _ = _values()
    d = decide(y, rough, close, RGATE, task=REGRESSION)
    assert not d.passed
    assert d.delta is not None and d.delta > 0  # RMSE went up
    assert d.prob_better is not None and d.prob_better < 0.05
    assert "not better enough" in d.reason and "rmse" in d.reason


def test_regression_equal_or_barely_better_is_not_enough() -> None:
    y, close, rough, _ = _values()
    jitter = close + np.random.default_rng(5).normal(scale=1e-3, size=len(close))
    assert not decide(y, jitter, close, RGATE, task=REGRESSION).passed
    gain = -(decide(y, close, rough, RGATE, task=REGRESSION).delta or 0.0)
    assert gain > 0
    d = decide(y, close, rough, RGATE.model_copy(update={"min_improvement": gain * 2}), task=REGRESSION)
    assert not d.passed and d.prob_better is not None and d.prob_better < 0.5


def test_regression_mae_and_r2_as_gate_metric() -> None:
    y, close, rough, _ = _values()
    mae = RGATE.model_copy(update={"metric": "mae"})
    assert decide(y, close, rough, mae, task=REGRESSION).passed
    assert not decide(y, rough, close, mae, task=REGRESSION).passed
    r2 = RGATE.model_copy(update={"metric": "r2", "min_improvement": 0.01})
    d = decide(y, close, rough, r2, task=REGRESSION)
    assert d.passed and d.higher_is_better and d.delta is not None and d.delta > 0.01
    assert not decide(y, rough, close, r2, task=REGRESSION).passed


def test_regression_rmse_ceiling_rejects() -> None:
    y, close, rough, _ = _values()
    rmse = point_metrics(REGRESSION, y, close)["rmse"]
    assert 9 < rmse < 11
    tight = RGATE.model_copy(update={"floors": {"rmse": 5.0}})
    # even a clearly better challenger is blocked by the ceiling...
    d = decide(y, close, rough, tight, task=REGRESSION)
    assert not d.passed
    assert d.failed_floors and d.failed_floors[0].startswith("rmse") and "> ceiling 5" in d.failed_floors[0]
    assert "rmse" in d.reason and "ceiling" in d.reason
    # ...and so is a first model
    first = decide(y, close, None, tight, task=REGRESSION)
    assert not first.passed and "first model" in first.reason and first.failed_floors
    # a ceiling above its RMSE is cleared
    loose = RGATE.model_copy(update={"floors": {"rmse": 20.0}})
    first = decide(y, close, None, loose, task=REGRESSION)
    assert first.passed and "first model" in first.reason and "rmse" in first.reason
    assert decide(y, close, rough, loose, task=REGRESSION).passed


def test_regression_r2_floor_is_a_minimum() -> None:
    y, close, _, constant = _values()
    floors = RGATE.model_copy(update={"floors": {"r2": 0.1}})
    useless = decide(y, constant, None, floors, task=REGRESSION)
    assert not useless.passed and useless.failed_floors[0].startswith("r2")
    assert "< floor" in useless.failed_floors[0]
    assert decide(y, close, None, floors, task=REGRESSION).passed


def test_a_metric_of_another_task_is_refused() -> None:
    y, close, rough, _ = _values(n=200)
    with pytest.raises(GlueError, match="'average_precision' is not a metric of task regression"):
        decide(y, close, rough, GATE.model_copy(update={"metric": "average_precision"}), task=REGRESSION)
    with pytest.raises(GlueError, match="'rmse' is not a metric of task binary_classification"):
        paired_bootstrap_deltas(*_scores(n=200)[:3], "rmse", 10)


def test_default_gate_metric_follows_the_task() -> None:
    y, close, rough, _ = _values()
    d = decide(y, close, rough, GateParams(bootstrap_samples=200), task=REGRESSION)
    assert d.metric == "rmse" and not d.higher_is_better
    ys, strong, weak, noise = _scores()
    assert decide(ys, strong, weak, GateParams(bootstrap_samples=200)).metric == "average_precision"
    # no floors unless the model names them: even a useless first model passes
    assert decide(ys, noise, None, GateParams(bootstrap_samples=200)).reason == "first model (no floors)"


def test_regression_point_metrics_match_sklearn() -> None:
    y, close, _, _ = _values()
    m = point_metrics(REGRESSION, y, close)
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, close)))
    assert m["mae"] == pytest.approx(mean_absolute_error(y, close))
    assert m["r2"] == pytest.approx(r2_score(y, close))


@pytest.mark.parametrize(("metric", "reference"), [
    ("rmse", lambda y, p: np.sqrt(mean_squared_error(y, p))),
    ("mae", mean_absolute_error),
    ("r2", r2_score),
])
def test_regression_bootstrap_is_paired_and_matches_sklearn(metric: str, reference) -> None:
    y, close, rough, _ = _values(n=1500)
    deltas = paired_bootstrap_deltas(y, close, rough, metric, 200, seed=3, task=REGRESSION)
    assert len(deltas) == 200
    full = reference(y, close) - reference(y, rough)
    assert abs(deltas.mean() - full) < 0.1 * abs(full)
    assert np.all(paired_bootstrap_deltas(y, close, close, metric, 50, task=REGRESSION) == 0)
    again = paired_bootstrap_deltas(y, close, rough, metric, 200, seed=3, task=REGRESSION)
    assert np.array_equal(deltas, again)


@pytest.mark.parametrize(("metric", "reference"), [("average_precision", average_precision_score),
                                                   ("roc_auc", roc_auc_score)])
def test_bootstrap_is_paired_and_matches_sklearn(metric: str, reference) -> None:
    y, strong, weak, _ = _scores(n=1500)
    strong = np.round(strong, 2)  # ties, as real scores have
    deltas = paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3)
    assert len(deltas) == 200
    assert np.array_equal(deltas, paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3,
                                                          task="binary_classification"))
    # the mean of the resampled deltas is close to the delta on all rows
    full = reference(y, strong) - reference(y, weak)
    assert abs(deltas.mean() - full) < 0.03
    # identical models: every paired resample gives exactly zero
    assert np.all(paired_bootstrap_deltas(y, strong, strong, metric, 50) == 0)
    # reproducible from the seed
    assert np.array_equal(deltas, paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3))


@pytest.mark.parametrize(("metric", "reference"), [("log_loss", log_loss), ("brier", brier_score_loss)])
def test_bootstrap_of_probability_losses_matches_sklearn(metric: str, reference) -> None:
    y, strong, weak, _ = _scores(n=1500)
    deltas = paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3)
    full = reference(y, strong) - reference(y, weak)
    assert full < 0  # the strong model's probabilities lose less
    assert abs(deltas.mean() - full) < 0.2 * abs(full)
    assert np.all(paired_bootstrap_deltas(y, strong, strong, metric, 50) == 0)


def test_weighted_error_equals_sklearn_with_weights() -> None:
    from glue.promotion import _weighted_error

    y, strong, _, _ = _scores(n=800, seed=2)
    weights = np.random.default_rng(0).integers(0, 3, size=(3, len(y))).astype(float)
    for metric, reference in (("log_loss", log_loss), ("brier", brier_score_loss)):
        ours = _weighted_error(weights, y.astype(float), strong, metric)
        theirs = [reference(y, strong, sample_weight=w) for w in weights]
        assert np.allclose(ours, theirs)
    values, close, _, _ = _values(n=800, seed=2)
    for metric, reference in (("rmse", lambda a, b, sample_weight: np.sqrt(mean_squared_error(
            a, b, sample_weight=sample_weight))), ("mae", mean_absolute_error), ("r2", r2_score)):
        ours = _weighted_error(weights, values, close, metric)
        theirs = [reference(values, close, sample_weight=w) for w in weights]
        assert np.allclose(ours, theirs)


def test_weighted_metric_equals_sklearn_with_weights() -> None:
    from glue.promotion import _sorted_for, _weighted_metric

    y, strong, _, _ = _scores(n=800, seed=2)
    scores = np.round(strong, 2)
    weights = np.random.default_rng(0).integers(0, 3, size=(3, len(y))).astype(float)
    order, ys, last = _sorted_for(scores, y.astype(float))
    for metric, reference in (("average_precision", average_precision_score), ("roc_auc", roc_auc_score)):
        ours = _weighted_metric(weights[:, order], ys, last, metric)
        theirs = [reference(y, scores, sample_weight=w) for w in weights]
        assert np.allclose(ours, theirs)


def test_concurrent_change_detected() -> None:
    assert not concurrent_change("3", "3")
    assert not concurrent_change(None, None)
    assert concurrent_change("3", "4")
    assert concurrent_change(None, "4")  # someone promoted a first model meanwhile
    assert concurrent_change("3", None)  # or removed the alias

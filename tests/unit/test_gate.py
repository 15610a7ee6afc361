"""The champion/challenger rule on score arrays: no MLflow, no models, just the decision."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from glue.promotion import concurrent_change, decide, paired_bootstrap_deltas
from glue.settings import GateParams

GATE = GateParams(bootstrap_samples=300)


def _scores(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a strong, a weak and a useless score for the same rows."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.08).astype(int)
    strong = y * 1.6 + rng.normal(size=n)
    weak = y * 0.9 + rng.normal(size=n)
    noise = rng.normal(size=n)
    return y, strong, weak, noise


def test_clearly_better_challenger_passes() -> None:
    y, strong, weak, _ = _scores()
    d = decide(y, strong, weak, GATE)
    assert d.passed, d.reason
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
    jitter = strong + np.random.default_rng(5).normal(scale=1e-3, size=len(strong))
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


def test_roc_auc_as_primary_metric() -> None:
    y, strong, weak, _ = _scores()
    d = decide(y, strong, weak, GATE.model_copy(update={"primary_metric": "roc_auc"}))
    assert d.passed and "roc_auc" in d.reason


@pytest.mark.parametrize(("metric", "reference"), [("average_precision", average_precision_score),
                                                   ("roc_auc", roc_auc_score)])
def test_bootstrap_is_paired_and_matches_sklearn(metric: str, reference) -> None:
    y, strong, weak, _ = _scores(n=1500)
    strong = np.round(strong, 1)  # ties, as real scores have
    deltas = paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3)
    assert len(deltas) == 200
    # the mean of the resampled deltas is close to the delta on all rows
    full = reference(y, strong) - reference(y, weak)
    assert abs(deltas.mean() - full) < 0.03
    # identical models: every paired resample gives exactly zero
    assert np.all(paired_bootstrap_deltas(y, strong, strong, metric, 50) == 0)
    # reproducible from the seed
    assert np.array_equal(deltas, paired_bootstrap_deltas(y, strong, weak, metric, 200, seed=3))


def test_weighted_metric_equals_sklearn_with_weights() -> None:
    from glue.promotion import _sorted_for, _weighted_metric

    y, strong, _, _ = _scores(n=800, seed=2)
    scores = np.round(strong, 1)
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

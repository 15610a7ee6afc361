"""The sample-size-aware drift thresholds through Evidently itself (monitoring/reports.py).

Synthetic days shaped like the demo's: a merchant feature that is one snapshot per merchant and
day, repeated for each of its transactions (rows of a day are not independent), a skewed amount
and a binary flag. A quiet small day stays quiet; a spending shift on the same day size is drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import reports
from monitoring.policy import DriftPolicy

FEATURES = ["merchant_rate", "amount", "online"]


def _day(rng: np.random.Generator, day: int, rows: int, spend: float = 1.0) -> pd.DataFrame:
    merchants = rng.lognormal(0.0, 0.6, 60)  # this day's snapshot of 60 merchants
    who = rng.choice(60, rows, p=rng.dirichlet(np.ones(60)))
    amount = rng.lognormal(3.4, 0.8, rows) * spend
    return pd.DataFrame({
        "event_timestamp": pd.Timestamp("2026-02-01", tz="UTC") + pd.Timedelta(days=day)
        + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s"),
        "merchant_rate": merchants[who],
        "amount": amount,
        "online": (rng.random(rows) < 0.3).astype(int),
        "prediction": 1 / (1 + np.exp(-(np.log(amount) - 6))),
    })


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.concat([_day(rng, d, 700) for d in range(14)], ignore_index=True)


def test_the_reference_days_give_each_column_its_noise(reference: pd.DataFrame) -> None:
    noise = reports.reference_noise(reference, FEATURES, DriftPolicy(), prediction="prediction")
    assert set(noise) == {*FEATURES, "prediction"} and all(n.days == 14 for n in noise.values())
    # the merchant feature's rows come in clusters: noisier per unit of size than the amount's
    assert noise["merchant_rate"].mean > 1.5 * noise["amount"].mean


def test_a_quiet_small_day_is_not_drift_and_a_spending_shift_is(reference: pd.DataFrame,
                                                                tmp_path: Path) -> None:
    policy, fixed = DriftPolicy(), DriftPolicy(noise_sigmas=0.0)
    rng = np.random.default_rng(99)
    quiet_alarms, fixed_alarms = 0, 0
    for i in range(3):  # three quiet days of the same process
        quiet = _day(rng, 20 + i, 700)
        finding, _ = reports.drift_report(reference, quiet, FEATURES, policy, tmp_path / f"q{i}",
                                          prediction="prediction", time_column="event_timestamp")
        quiet_alarms += finding.dataset_drift or finding.prediction_drifted
        assert finding.thresholds["merchant_rate"] > 0.1  # raised: a 700-row day is noisy there
        assert all(t >= 0.1 for t in finding.thresholds.values())  # never lowered
        unsized, _ = reports.drift_report(reference, quiet, FEATURES, fixed, tmp_path / f"f{i}",
                                          prediction="prediction")
        fixed_alarms += unsized.dataset_drift or unsized.prediction_drifted
    assert quiet_alarms == 0
    assert fixed_alarms == 3  # the fixed 0.1 takes the merchant feature's noise for drift every day

    shifted = _day(rng, 30, 700, spend=1.8)
    finding, saved = reports.drift_report(reference, shifted, FEATURES, policy, tmp_path / "s",
                                          prediction="prediction", time_column="event_timestamp")
    assert "amount" in finding.drifted_columns and finding.dataset_drift and finding.prediction_drifted
    unsized, _ = reports.drift_report(reference, shifted, FEATURES, fixed, tmp_path / "f",
                                      prediction="prediction")
    assert unsized.scores == finding.scores  # the scores do not depend on the thresholds
    assert unsized.thresholds == dict.fromkeys([*FEATURES, "prediction"], 0.1)
    # what the report's tests held each column to is what the finding says
    text = json.dumps(json.loads(saved.json.read_text()))
    assert f"{finding.thresholds['merchant_rate']:0.2f}" in text

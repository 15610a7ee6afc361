"""The monitoring decision, its records and its alert, without running a report."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from glue.features import _unique_key_parts
from glue.monitor import DECISION_FILE, cooling_down, drop_interval, quality_metric
from monitoring import alerts, prometheus
from monitoring.policy import (
    ColumnNoise,
    DriftPolicy,
    DriftTest,
    MonitoringParams,
    QualityFinding,
    decide,
    drift_finding,
    drift_thresholds,
    noise_threshold,
    size_term,
    window_days,
)

PARAMS = MonitoringParams()


def _drift(drifted: list[str], n: int = 10, prediction: bool = False):  # noqa: ANN202
    return drift_finding(PARAMS.drift, drifted, n, {c: 0.2 for c in drifted}, 0.05, prediction)


def _quality(value: float | None, baseline: float | None = 0.6) -> QualityFinding:
    return QualityFinding(metric="average_precision", value=value, baseline=baseline, rows=900,
                          positives=12, window="2026-03-01 .. 2026-03-08")


def test_drift_needs_the_policy_share_of_features() -> None:
    below = decide(PARAMS, _drift(["a"]), None)  # 10% < 20%
    assert not below.drift and not below.retrain
    assert "1 of 10 features drifted (10% < 20%): a" in below.reasons[0]
    at = decide(PARAMS, _drift(["a", "b"]), None)  # 20% >= 20%
    assert at.drift and at.retrain and at.reasons[-1] == "retrain: requested"


def test_prediction_drift_counts_only_when_the_policy_says_so() -> None:
    assert decide(PARAMS, _drift([], prediction=True), None).drift
    quiet = PARAMS.model_copy(update={"drift": PARAMS.drift.model_copy(
        update={"prediction_drift_counts": False})})
    decision = decide(quiet, _drift([], prediction=True), None)
    assert not decision.drift and "does not count" in decision.reasons[1]


def test_decay_is_a_drop_beyond_the_limit_from_the_validation_value() -> None:
    assert not decide(PARAMS, None, _quality(0.55)).decay  # drop 0.05 <= 0.1
    decayed = decide(PARAMS, None, _quality(0.45))  # drop 0.15
    assert decayed.decay and decayed.retrain
    assert decayed.reasons[1].startswith("decay: drop +0.150 beyond the limit 0.100; average_precision 0.450")
    assert "(900 rows, 12 positive) vs 0.600 at validation" in decayed.reasons[1]
    unmeasured = decide(PARAMS, None, QualityFinding("average_precision", None, 0.6, 10, 0, "w", "too few"))
    assert not unmeasured.decay and "not measured" in unmeasured.reasons[1]


def test_a_noisy_dip_is_not_decay_unless_the_interval_clears_the_baseline() -> None:
    noisy = QualityFinding("average_precision", 0.45, 0.6, 900, 12, "w", drop_low=0.05, drop_high=0.25)
    decision = decide(PARAMS, None, noisy)
    assert not decision.decay and "not surely beyond the limit 0.100" in decision.reasons[1]
    clear = QualityFinding("average_precision", 0.4, 0.6, 900, 40, "w", drop_low=0.12, drop_high=0.28)
    assert decide(PARAMS, None, clear).decay


def test_retrain_on_limits_what_triggers_and_cooldown_holds_back() -> None:
    decay_only = PARAMS.model_copy(update={"retrain_on": ["decay"]})
    assert not decide(decay_only, _drift(["a", "b", "c", "d"]), None).retrain
    held = decide(PARAMS, _drift(["a", "b", "c", "d"]), None, cooling_down="a retrain was requested on X")
    assert held.drift and not held.retrain
    assert held.reasons[-1].startswith("retrain held back: a retrain was requested on X")


def test_cooldown_reads_the_decisions_of_the_days_before(tmp_path: Path) -> None:
    def record(day: str, retrain: bool) -> None:
        (tmp_path / day).mkdir()
        (tmp_path / day / DECISION_FILE).write_text(json.dumps({"decision": {"retrain": retrain}}))

    record("2026-03-01", True)
    record("2026-03-03", False)
    assert cooling_down(tmp_path, dt.date(2026, 3, 4), 3) == "a retrain was requested on 2026-03-01"
    assert cooling_down(tmp_path, dt.date(2026, 3, 5), 3) is None  # 4 days back: outside
    assert cooling_down(tmp_path, dt.date(2026, 3, 1), 3) is None  # the day itself does not count
    assert cooling_down(tmp_path, dt.date(2026, 3, 4), 0) is None


def test_policy_rejects_unknown_methods_and_fields() -> None:
    with pytest.raises(ValidationError, match="method"):
        MonitoringParams.model_validate({"drift": {"numerical": {"method": "eyeball", "threshold": 0.1}}})
    with pytest.raises(ValidationError, match="drift_shar"):
        MonitoringParams.model_validate({"drift": {"drift_shar": 0.5}})


def test_prometheus_text_has_help_type_labels_and_skips_missing_values() -> None:
    text = prometheus.render([
        ("drift", "1 if drift", {"model": "m", "version": "3"}, 1.0),
        ("feature_drift_score", "score", {"model": "m", "feature": 'a"b'}, 0.25),
        ("feature_drift_score", "score", {"model": "m", "feature": "c"}, 0.5),
        ("quality", "q", {}, None),
    ])
    assert text.splitlines() == [
        "# HELP glue_monitoring_drift 1 if drift",
        "# TYPE glue_monitoring_drift gauge",
        'glue_monitoring_drift{model="m",version="3"} 1',
        "# HELP glue_monitoring_feature_drift_score score",
        "# TYPE glue_monitoring_feature_drift_score gauge",
        'glue_monitoring_feature_drift_score{feature="a\\"b",model="m"} 0.25',
        'glue_monitoring_feature_drift_score{feature="c",model="m"} 0.5',
    ]


def test_alert_posts_json_to_the_webhook_logs_without_one_and_survives_a_dead_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    assert alerts.send_alert(url, {"text": "drift", "day": "2026-03-01"}).status == "sent"
    thread.join(5)
    server.server_close()
    assert received == [{"text": "drift", "day": "2026-03-01"}]

    with caplog.at_level("WARNING", logger="glue.alerts"):
        assert alerts.send_alert(None, {"text": "decay"}).status == "logged"
        assert alerts.send_alert(url, {"text": "again"}).status == "failed"  # server gone
    assert "ALERT (no webhook configured" in caplog.text and "again" in caplog.text


def test_feast_join_parts_never_repeat_a_key_at_one_instant() -> None:
    t = pd.Timestamp("2026-01-01 10:00", tz="UTC")
    df = pd.DataFrame({
        "transaction_id": ["a", "b", "c", "d", "e"],
        "customer_id": [1, 1, 2, 3, 1],
        "merchant_id": [10, 11, 10, 12, 10],
        "event_timestamp": [t, t, t, t, t + pd.Timedelta(seconds=1)],
    })
    parts = _unique_key_parts(df, ["customer_id", "merchant_id"])
    assert sorted(i for p in parts for i in p["transaction_id"]) == ["a", "b", "c", "d", "e"]
    for part in parts:
        assert not part.duplicated(["customer_id", "event_timestamp"]).any()
        assert not part.duplicated(["merchant_id", "event_timestamp"]).any()
    assert len(parts) == 2


def test_regression_decay_is_an_error_that_grew_beyond_the_limit() -> None:
    """rmse: lower is better, so decay is a rise; no classes, so no positives are counted."""
    policy = MonitoringParams.model_validate({"quality": {"metric": "rmse", "max_drop": 5.0}})

    def finding(value: float, **interval: float) -> QualityFinding:
        return QualityFinding("rmse", value, 40.0, 900, None, "w", **interval)

    better = decide(policy, None, finding(30.0))  # 10 units better: a negative drop
    assert not better.decay and "drop -10.000" in better.reasons[1]
    worse = decide(policy, None, finding(46.0))
    assert worse.decay
    assert worse.reasons[1].startswith("decay: drop +6.000 beyond the limit 5.000; rmse 46.000")
    assert "(900 rows) vs 40.000 at validation" in worse.reasons[1]
    assert not decide(policy, None, finding(46.0, drop_low=-1.0, drop_high=12.0)).decay  # noisy
    r2 = QualityFinding("r2", 0.3, 0.5, 900, None, "w")  # higher is better, like a classifier's AP
    assert r2.drop == pytest.approx(0.2) and r2.direction == "max"


def test_the_drop_interval_points_the_way_the_metric_gets_worse() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    y = rng.normal(100.0, 20.0, 800)
    good = (y, y + rng.normal(0.0, 5.0, 800))
    bad = (y, y + rng.normal(0.0, 15.0, 800))
    rmse = quality_metric("rmse")
    low, high = drop_interval(good, bad, rmse, 200, 0.9, direction="min", binary=False)
    assert 8.0 < low < high < 12.0  # rmse rose by ~10: a positive drop
    low, high = drop_interval(bad, good, rmse, 200, 0.9, direction="min", binary=False)
    assert high < 0  # it improved
    assert quality_metric("r2")(y, y) == 1.0 and quality_metric("mae")(y, y + 2.0) == pytest.approx(2.0)

    labels = (rng.random(800) < 0.1).astype(int)
    scores = labels * 0.6 + rng.random(800) * 0.5
    low, high = drop_interval((labels, scores), (labels, rng.random(800)),
                              quality_metric("average_precision"), 200, 0.9)
    assert low > 0.3  # a model gone random lost most of its average precision
    precision = quality_metric("precision", threshold=0.9)
    assert precision(np.array([1, 0, 1]), np.array([0.95, 0.95, 0.5])) == 0.5


# A merchant feature's quiet-day noise as the demo's reference shows it (benchmarks/monitoring_trust.py):
# about 2 units of sqrt(1/n_ref + 1/n_cur) on average, 0.5 of spread.
MERCHANT_NOISE = ColumnNoise(mean=2.0, sd=0.5, days=14)
WASSERSTEIN = DriftTest(method="wasserstein", threshold=0.1)


def test_a_small_window_holds_a_distance_to_the_noise_expected_at_its_size() -> None:
    small = noise_threshold(WASSERSTEIN, MERCHANT_NOISE, 3.0, 10_000, 700)
    assert small == pytest.approx(3.5 * (1 / 10_000 + 1 / 700) ** 0.5)  # ~0.137
    assert small > 0.12  # a quiet 700-row day at 0.12 is noise, not drift
    # the team's threshold stands where the window is big enough: never lowered
    assert noise_threshold(WASSERSTEIN, MERCHANT_NOISE, 3.0, 16_000, 17_000) == 0.1
    assert noise_threshold(WASSERSTEIN, ColumnNoise(0.1, 0.01, 14), 3.0, 10_000, 700) == 0.1
    # and without a noise estimate, or with noise_sigmas 0, the fixed thresholds come back
    assert noise_threshold(WASSERSTEIN, None, 3.0, 10_000, 700) == 0.1
    assert noise_threshold(WASSERSTEIN, MERCHANT_NOISE, 0.0, 10_000, 700) == 0.1


def test_p_value_tests_keep_their_threshold_and_divergences_shrink_like_one_over_n() -> None:
    ks = DriftTest(method="ks", threshold=0.05)  # a p-value already accounts for the sizes
    assert noise_threshold(ks, MERCHANT_NOISE, 3.0, 10_000, 700) == 0.05
    assert size_term("psi", 1000, 1000) == pytest.approx(0.002)
    assert size_term("jensenshannon", 1000, 1000) == pytest.approx(0.002 ** 0.5)


def _window_verdict(policy: DriftPolicy, scores: dict[str, float], n_current: int) -> bool:
    """The drift decision for scores of 10 features + prediction, each with MERCHANT_NOISE."""
    features = [f"f{i}" for i in range(10)]
    noise = {c: MERCHANT_NOISE for c in [*features, "prediction"]}
    thresholds = drift_thresholds(policy, features, [], noise, 10_000, n_current, "prediction")
    drifted = [c for c in features if scores[c] >= thresholds[c]]
    finding = drift_finding(policy, drifted, len(features), scores, scores["prediction"],
                            scores["prediction"] >= thresholds["prediction"], thresholds)
    return decide(MonitoringParams(drift=policy), finding, None).drift


def test_a_small_quiet_window_is_not_drift_and_a_clear_shift_still_is() -> None:
    sized, fixed = DriftPolicy(), DriftPolicy(noise_sigmas=0.0)
    # a quiet 700-row day: three features at the noise's tail, past the fixed 0.1
    quiet = {**{f"f{i}": 0.06 for i in range(10)}, "f0": 0.12, "f1": 0.11, "f2": 0.125, "prediction": 0.09}
    assert _window_verdict(fixed, quiet, 700)  # the false alarm the fixed thresholds raise
    assert not _window_verdict(sized, quiet, 700)
    # a spending shift: the amount features far past any noise, at any size
    shift = {**quiet, "f3": 0.6, "f4": 0.45, "f5": 0.3, "prediction": 0.2}
    assert _window_verdict(sized, shift, 700) and _window_verdict(fixed, shift, 700)
    # at 17,000 a day the same scores are no noise: both policies say drift on the quiet scores
    assert _window_verdict(sized, quiet, 17_000)
    # the scores' own thresholds are recorded with the finding
    one = drift_thresholds(sized, ["f0"], [], {"f0": MERCHANT_NOISE}, 10_000, 700)
    assert one["f0"] == pytest.approx(0.137, abs=0.001)


def test_column_overrides_and_categories_pick_their_own_test() -> None:
    policy = DriftPolicy(columns={"amount": DriftTest(method="psi", threshold=0.2)})
    assert policy.test_for("amount", categorical=False).method == "psi"
    assert policy.test_for("channel", categorical=True) == policy.categorical
    assert policy.test_for("age", categorical=False) == policy.numerical


def test_a_small_day_is_checked_with_the_days_before_it_until_the_window_holds_enough_rows() -> None:
    policy = DriftPolicy()  # min_window_rows 1400, max_window_days 7
    assert window_days(policy, [700, 690, 720, 700]) == 3  # 700 a day: the day and the two before it
    assert window_days(policy, [800, 760, 700]) == 2  # 1,560 rows in two days
    # a day big enough is the window, as it always was: no dilution of a shift's first day
    assert window_days(policy, [1_600, 1_700]) == 1 and window_days(policy, [17_000]) == 1
    # never past max_window_days, nor past the days there are
    assert window_days(policy, [100] * 30) == 7
    assert window_days(policy, [300, 300]) == 2
    # a policy's own current_days is the least it looks at
    assert window_days(policy, [5_000] * 5, current_days=3) == 3
    assert window_days(DriftPolicy(min_window_rows=1), [10, 10]) == 1

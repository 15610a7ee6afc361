"""`glue monitor` against the real tools: Feast features, an MLflow champion, Evidently reports.

The demo's spending shift starts on day 55; the champion trains on the labelled days before its
validation window, so its drift reference (its last 14 training days) is before the shift.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from glue import contract, demo_data, features, monitor, promotion, training, validation
from glue.errors import GlueError
from glue.settings import DemoParams, get_settings

SHIFT_DAY = 55
START = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 60 demo days (shift on day 55) and a promoted champion."""
    from tests.conftest import copy_project_config

    root = copy_project_config(tmp_path_factory.mktemp("monitor") / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    get_settings.cache_clear()
    settings = get_settings()
    demo_data.generate(DemoParams(days=60, transactions_per_day=500, customers=1500, merchants=150,
                                  shift_day=SHIFT_DAY, shift_kind="spending_change"), settings.raw_dir)
    validation.validate_batches(settings)
    features.build_features(settings)
    training.train(settings)
    assert promotion.evaluate_and_promote(settings).promoted
    yield root
    get_settings.cache_clear()
    mp.undo()


@pytest.mark.slow
def test_quiet_day_before_the_shift_and_drift_after_it(champion_project: Path) -> None:
    settings = get_settings()
    before = monitor.check(settings, START + dt.timedelta(days=50))
    assert not before.decision.drift and not before.decision.retrain, before.summary()
    assert before.drift is not None and before.drift.share < settings.params.monitoring.drift.drift_share
    assert before.reference_rows > 1000 and before.current_rows > 200

    after = monitor.check(settings, START + dt.timedelta(days=SHIFT_DAY + 1))
    assert after.decision.drift and after.decision.retrain, after.summary()
    assert any("amount" in c for c in after.drift.drifted_columns)
    assert after.alert.startswith("logged")  # no webhook configured

    out = after.out_dir
    assert (out / "drift.html").stat().st_size > 10_000
    record = json.loads((out / "decision.json").read_text())
    assert record["decision"]["retrain"] is True and record["champion_version"] == after.champion_version
    prom = (out / "metrics.prom").read_text()
    assert 'glue_monitoring_drift{model="fraud-detector",version="1"} 1' in prom
    assert "glue_monitoring_feature_drift_score{" in prom


@pytest.mark.slow
def test_check_is_logged_to_mlflow_once_per_day_and_tags_the_champion(champion_project: Path) -> None:
    from mlflow import MlflowClient

    from glue import tracking

    settings = get_settings()
    day = START + dt.timedelta(days=57)
    first = monitor.check(settings, day)
    again = monitor.check(settings, day)  # a re-run of the same day
    assert first.run_id == again.run_id

    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(first.run_id)
    assert run.data.tags[contract.MONITOR_DAY] == day.isoformat()
    assert run.data.tags[contract.MONITOR_MODEL_VERSION] == first.champion_version
    assert "drift" in run.data.tags["mlflow.note.content"]
    logged = {a.path for a in client.list_artifacts(first.run_id, "monitoring")}
    assert {"monitoring/drift.html", "monitoring/drift.json", "monitoring/decision.json",
            "monitoring/metrics.prom"} <= logged
    champion = tracking.get_alias(settings.params.train.registered_model_name, "champion")
    assert champion.tags[contract.MONITOR_LAST_CHECK].startswith(f"{day}: drift=true")


@pytest.mark.slow
def test_cooldown_and_missing_day(champion_project: Path) -> None:
    settings = get_settings()
    monitor.check(settings, START + dt.timedelta(days=56))  # drift: retrain requested
    held = monitor.check(settings, START + dt.timedelta(days=57))
    assert held.decision.drift and not held.decision.retrain
    assert held.decision.reasons[-1].startswith("retrain held back: a retrain was requested on")

    with pytest.raises(GlueError, match="no validated transactions .* 2026-06-01"):
        monitor.check(settings, dt.date(2026, 6, 1))


@pytest.mark.slow
def test_the_current_window_is_what_glue_serve_answered(champion_project: Path) -> None:
    """Transactions scored through the real server land in the prediction log, which the check reads."""
    import time

    from fastapi.testclient import TestClient

    from glue import prediction_log, serving

    settings = get_settings()
    day = START + dt.timedelta(days=59)  # the online store holds the features of the last snapshot
    tx = features.read_transactions(settings)
    todays = tx[tx["event_timestamp"].dt.date == day]
    bodies = [{"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
               "merchant_id": int(r.merchant_id), "amount": float(r.amount), "channel": str(r.channel),
               "card_present": bool(r.card_present), "event_timestamp": r.event_timestamp.isoformat()}
              for r in todays.itertuples()]
    app = serving.create_app(settings, serving.ServingParams(poll_seconds=0.2, unknown_entities="score"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        for start in range(0, len(bodies), 100):
            answer = client.post("/predict", json={"transactions": bodies[start:start + 100]})
            assert answer.status_code == 200, answer.text
    # leaving the client stops the app, which flushes the prediction log
    served = prediction_log.read_served(settings, day, day + dt.timedelta(days=1), "1")
    assert len(served) == len(bodies)

    result = monitor.check(settings, day)
    record = json.loads((result.out_dir / "decision.json").read_text())
    assert record["windows"]["current_source"].startswith(f"prediction log ({len(bodies)} served")
    assert result.current_rows == len(bodies)
    assert result.decision.drift, result.summary()  # after the shift, as the offline check found

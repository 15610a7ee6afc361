"""`glue monitor` against the real tools: Feast features, MLflow champions, Evidently reports.

Both demo models are checked: the binary one in average precision, the regression one in rmse,
each in its own folder and MLflow experiment. The demo's spending shift starts on day 55; each
champion trains on the labelled days before its validation window, so its drift reference (its
last 14 training days) is before the shift.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from glue import contract, features, monitor, project_code, promotion, training, validation
from glue.errors import GlueError
from glue.settings import ModelSpec, Settings, get_settings

SHIFT_DAY = 55
START = dt.date(2026, 1, 1)
# the module fixture (60 days, two models trained and gated) counts in whichever test runs first
pytestmark = pytest.mark.timeout(900)


def _model(settings: Settings, task: str) -> ModelSpec:
    return next(m for m in settings.models if m.task == task)


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 60 demo days (shift on day 55) and a promoted champion of every model."""
    from tests.conftest import copy_project_config, one_openmp_thread

    root = copy_project_config(tmp_path_factory.mktemp("monitor") / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    get_settings.cache_clear()
    settings = get_settings()
    generate = project_code.load_callable(settings.params.data.generator, root, "data.generator")
    generate({**settings.params.demo, "days": 60, "transactions_per_day": 500, "customers": 1500,
              "merchants": 150, "shift_day": SHIFT_DAY, "shift_kind": "spending_change"}, settings.raw_dir)
    validation.validate_batches(settings)
    features.build_features(settings)
    for model in settings.models:
        # the regression champion learns from the labels known by day 40: the last labelled days
        # (known by day 59) are ones it never saw, so its quality can be measured
        until = dt.datetime(2026, 2, 10, tzinfo=dt.UTC) if model.task == "regression" else None
        frame = features.training_frame(settings, model, until=until)
        with one_openmp_thread():
            training.train(settings, model, frame)
        assert promotion.evaluate_and_promote(settings, model, frame).promoted, model.name
    yield root
    get_settings.cache_clear()
    mp.undo()


@pytest.mark.slow
def test_quiet_day_before_the_shift_and_drift_after_it(champion_project: Path) -> None:
    settings = get_settings()
    model = _model(settings, "binary_classification")
    before = monitor.check(settings, model, START + dt.timedelta(days=50))
    assert not before.decision.drift and not before.decision.retrain, before.summary()
    assert before.drift is not None and before.drift.share < model.monitoring.drift.drift_share
    assert before.reference_rows > 1000 and before.current_rows > 200

    # 500 events a day: the drift window reaches back until it holds 1,400 rows (policy
    # min_window_rows). In this small project (1,500 card holders, 150 merchants) the spending
    # shift moves 4 of the 24 features on its first three days, under the 20% drift share (a single
    # noisy 500-row day used to add a fifth); on its fourth the 7-day aggregates join them
    after = monitor.check(settings, model, START + dt.timedelta(days=SHIFT_DAY + 3))
    assert after.decision.drift and after.decision.retrain, after.summary()
    assert any("amount" in c for c in after.drift.drifted_columns)
    assert after.alert.startswith("logged")  # no webhook configured

    out = after.out_dir
    assert out == monitor.model_dir(settings, model) / after.day.isoformat()
    assert out.parent == settings.monitoring_dir / model.name
    assert (out / "drift.html").stat().st_size > 10_000
    record = json.loads((out / "decision.json").read_text())
    assert record["decision"]["retrain"] is True and record["champion_version"] == after.champion_version
    assert record["windows"]["current_source"].startswith("validated batches")
    prom = (out / "metrics.prom").read_text()
    assert f'glue_monitoring_drift{{model="{model.name}",version="1"}} 1' in prom
    assert "glue_monitoring_feature_drift_score{" in prom
    assert (settings.monitoring_dir / f"{model.name}.prom").read_text() == prom


@pytest.mark.slow
def test_the_regression_model_is_checked_in_its_own_metric_folder_and_experiment(
    champion_project: Path,
) -> None:
    from mlflow import MlflowClient

    settings = get_settings()
    model = _model(settings, "regression")
    day = START + dt.timedelta(days=59)
    result = monitor.check(settings, model, day)
    assert result.model == model.name and result.out_dir.parent == settings.monitoring_dir / model.name
    # one row per card holder and day, as in its training set (not one per event), for each day of
    # the drift window (500 events a day: the day and the days before it, to 1,400 events)
    windows = json.loads((result.out_dir / "decision.json").read_text())["windows"]
    start, end = (dt.date.fromisoformat(windows[k]) for k in ("current_start", "current_end"))
    days = (end - start).days
    assert days > 1 and 0 < result.current_rows <= 1500 * days and result.drift is not None
    quality = result.quality
    assert quality is not None and quality.metric == "rmse" and quality.positives is None
    assert quality.value is not None and quality.baseline is not None, result.summary()
    assert (result.out_dir / "quality.html").is_file()
    assert any(r.startswith(("decay:", "no decay:")) and "rmse" in r for r in result.decision.reasons)
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == f"{model.name}-monitoring"
    assert run.data.tags[contract.MONITOR_MODEL] == model.name
    assert "quality.rmse" in run.data.metrics


@pytest.mark.slow
def test_check_is_logged_to_mlflow_once_per_day_and_tags_the_champion(champion_project: Path) -> None:
    from mlflow import MlflowClient

    from glue.adapters import mlflow

    settings = get_settings()
    model = _model(settings, "binary_classification")
    day = START + dt.timedelta(days=58)
    first = monitor.check(settings, model, day)
    again = monitor.check(settings, model, day)  # a re-run of the same day
    assert first.run_id == again.run_id

    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(first.run_id)
    assert client.get_experiment(run.info.experiment_id).name == model.monitoring.experiment_name
    assert run.data.tags[contract.MONITOR_DAY] == day.isoformat()
    assert run.data.tags[contract.MONITOR_MODEL_VERSION] == first.champion_version
    assert "drift" in run.data.tags["mlflow.note.content"]
    logged = {a.path for a in client.list_artifacts(first.run_id, "monitoring")}
    assert {"monitoring/drift.html", "monitoring/drift.json", "monitoring/decision.json",
            "monitoring/metrics.prom"} <= logged
    champion = mlflow.get_alias(model.name, "champion")
    assert champion.tags[contract.MONITOR_LAST_CHECK].startswith(f"{day}: drift=true")


@pytest.mark.slow
def test_cooldown_per_model_and_missing_day(champion_project: Path) -> None:
    settings = get_settings()
    model = _model(settings, "binary_classification")
    monitor.check(settings, model, START + dt.timedelta(days=58))  # drift: retrain requested
    held = monitor.check(settings, model, START + dt.timedelta(days=59))
    assert held.decision.drift and not held.decision.retrain
    assert held.decision.reasons[-1].startswith("retrain held back: a retrain was requested on")

    with pytest.raises(GlueError, match="no validated events .* 2026-06-01"):
        monitor.check(settings, model, dt.date(2026, 6, 1))


@pytest.mark.slow
def test_check_all_checks_every_model_on_the_newest_day(champion_project: Path) -> None:
    settings = get_settings()
    results = monitor.check_all(settings)
    assert [r.model for r in results] == [m.name for m in settings.models]
    assert {r.day for r in results} == {START + dt.timedelta(days=59)}
    one = monitor.check_all(settings, START + dt.timedelta(days=59), settings.models[-1].name)
    assert [r.model for r in one] == [settings.models[-1].name]


@pytest.mark.slow
def test_the_current_window_is_what_the_server_logged_for_this_model(champion_project: Path) -> None:
    """Enough served predictions of the champion in the prediction log: they are the current window.

    The lines are written in the log's format (glue/prediction_log.py), one per scored event, next
    to lines of another model that must be left out.
    """
    import pandas as pd

    from glue import prediction_log
    from glue.adapters import mlflow

    settings = get_settings()
    model = _model(settings, "binary_classification")
    day = START + dt.timedelta(days=59)
    events = features.read_events(settings)
    todays = events[events["event_timestamp"].dt.date == day].reset_index(drop=True)
    frame, columns = features.scoring_frame(settings, model, todays)
    champion = mlflow.get_alias(model.name, "champion")
    scores = training.predict(mlflow.load_sklearn_model(champion.uri), model.task, frame[columns])
    folder = prediction_log.log_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{day}.jsonl").open("w") as fh:
        for (_, row), score in zip(frame.iterrows(), scores, strict=True):
            for name in (model.name, "some-other-model"):
                fh.write(json.dumps({
                    "timestamp": f"{day}T23:00:00+00:00", "request_id": "r", "model_name": name,
                    "model_version": champion.version, "arm": "champion",
                    "request": {"event_timestamp": row["event_timestamp"].isoformat()},
                    "features": {c: None if pd.isna(row[c]) else float(row[c]) for c in columns},
                    "score": float(score)}) + "\n")

    result = monitor.check(settings, model, day)
    record = json.loads((result.out_dir / "decision.json").read_text())
    assert record["windows"]["current_source"].startswith(f"prediction log ({len(frame)} served")
    assert result.current_rows == len(frame)
    assert result.decision.drift, result.summary()  # after the shift, as the offline check found

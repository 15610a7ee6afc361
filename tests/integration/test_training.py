"""glue train against a real SQLite MLflow in a temporary project, on a synthetic TrainingFrame."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from glue import contract, lineage, training
from glue.errors import GlueError
from tests.integration.synthetic_frame import synthetic_frame


def test_split_holds_out_the_last_days() -> None:
    frame = synthetic_frame(days=10, rows_per_day=50)
    is_train, windows = training.split_by_days(frame.df, 3)
    days = frame.df["event_timestamp"].dt.floor("D")
    assert days[is_train].max() < days[~is_train].min()
    assert windows.validation_days == ["2026-01-08", "2026-01-09", "2026-01-10"]
    assert windows.validation_start == pd.Timestamp("2026-01-08", tz="UTC")
    assert windows.validation_end == pd.Timestamp("2026-01-11", tz="UTC")
    mask = training.window_mask(frame.df, windows.validation_start.isoformat(),
                                windows.validation_end.isoformat())
    assert (mask == ~is_train).all()
    with pytest.raises(GlueError, match="validation_days=10"):
        training.split_by_days(frame.df, 10)


@pytest.mark.slow
def test_train_logs_registers_and_tags_lineage(tmp_project: Path) -> None:
    from mlflow import MlflowClient

    from glue import tracking
    from glue.settings import get_settings

    subprocess.run(["git", "init", "-q"], cwd=tmp_project, check=True)
    subprocess.run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=tmp_project, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_project, check=True,
                          capture_output=True, text=True).stdout.strip()
    (tmp_project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  demo_data:\n    cmd: glue demo-data\n    outs:\n"
        "    - path: data/raw\n      md5: feedbeef.dir\n")
    summary = tmp_project / "data" / "validated" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"accepted": 30}')

    settings = get_settings()
    result = training.train(settings, synthetic_frame())

    # the run: params, metrics with a learnt signal, plots and importance as artifacts
    tags, params, metrics = tracking.run_data(result.run_id)
    assert params["model.type"] == "hist_gradient_boosting"
    assert params["validation_days"] == "7"
    assert metrics["roc_auc"] > 0.8 and metrics["average_precision"] > 0.3
    for name in ("precision_at_threshold", "recall_at_threshold", "log_loss", "brier_score",
                 "train_rows", "validation_rows", "train_fraud", "validation_fraud"):
        assert name in metrics
    assert metrics["train_rows"] + metrics["validation_rows"] == 4500
    artifacts = set(tracking.run_artifacts(result.run_id))
    for plot in ("roc_curve_plot", "precision_recall_curve_plot", "calibration_curve_plot",
                 "confusion_matrix"):
        assert f"{tracking.EVALUATE_PREFIX}{plot}.png" in artifacts
    assert {"feature_importance.png", "feature_importance.json", contract.FEAST_FEATURES_FILE} <= artifacts

    # the registered version: alias challenger, every lineage fact as a tag
    client = MlflowClient()
    version = client.get_model_version_by_alias("fraud-detector", contract.CHALLENGER)
    assert str(version.version) == result.version and version.run_id == result.run_id
    expected = {
        contract.GIT_COMMIT: head,
        contract.GIT_DIRTY: "false",
        contract.DVC_DATA_VERSION: "feedbeef.dir",
        contract.VALIDATION_SUMMARY: "data/validated/summary.json",
        contract.FEATURE_SERVICE: "fraud_model_v1",
        contract.FEAST_FEATURE_SERVICE: "fraud_model_v1",
        contract.VALIDATION_START: "2026-01-24T00:00:00+00:00",
        contract.VALIDATION_END: "2026-01-31T00:00:00+00:00",
        contract.TRAIN_START: "2026-01-01T00:00:00+00:00",
        contract.TRAIN_RUN_ID: result.run_id,
    }
    for key, value in expected.items():
        assert version.tags[key] == value, key
        if key != contract.TRAIN_RUN_ID:
            assert tags[key] == value, key
    assert len(version.tags[lineage.VALIDATION_SUMMARY_SHA256]) == 64
    assert "customer_daily:txn_count_1d" in version.tags[contract.FEATURE_REFS]
    assert json.loads(version.tags[contract.TRAIN_PARAMS])["validation_days"] == 7

    # artifacts landed in the profile's artifact dir; the model loads and scores
    assert any(settings.mlflow_artifacts_dir.rglob("model.pkl"))
    model = tracking.load_sklearn_model(f"models:/fraud-detector@{contract.CHALLENGER}")
    assert model.predict_proba(synthetic_frame().X.head(3)).shape == (3, 2)

    # DVC metrics and plots
    train_json = json.loads((tmp_project / training.METRICS_FILE).read_text())
    assert train_json["average_precision"] == pytest.approx(metrics["average_precision"])
    roc = pd.read_csv(tmp_project / training.ROC_CURVE_FILE)
    assert list(roc.columns) == ["fpr", "tpr"] and len(roc) > 10
    assert list(pd.read_csv(tmp_project / training.PR_CURVE_FILE).columns) == ["recall", "precision"]
    assert "version " + result.version in result.summary()

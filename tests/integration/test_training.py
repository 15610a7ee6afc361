"""glue train against a real SQLite MLflow in a temporary project, on synthetic TrainingFrames of
both demo models (a binary classification and a regression)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from glue import contract, lineage, training
from glue.errors import GlueError
from tests.integration.synthetic_frame import SPEND_FEATURES, synthetic_frame, synthetic_spend_frame


def _git_project(project: Path) -> str:
    """Make the project a git repo with one commit and a dvc.lock naming the raw data version."""
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=project, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True,
                          capture_output=True, text=True).stdout.strip()
    (project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  demo_data:\n    cmd: glue demo-data\n    outs:\n"
        "    - path: data/raw\n      md5: feedbeef.dir\n")
    summary = project / "data" / "validated" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"accepted": 30}')
    return head


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
    with pytest.raises(GlueError, match="10 labelled day.*validation_days=10 needs at least 11"):
        training.split_by_days(frame.df, 10)
    with pytest.raises(GlueError, match=r"params.yaml models\.fraud-detector\.validation_days=10"):
        training.split_by_days(frame.df, 10, "fraud-detector")


def test_split_of_daily_entity_rows_holds_out_whole_days() -> None:
    frame = synthetic_spend_frame(days=10, customers=20)
    is_train, windows = training.split_by_days(frame.df, 4)
    assert is_train.sum() == 6 * 20 and (~is_train).sum() == 4 * 20
    assert windows.validation_start == pd.Timestamp("2026-01-07", tz="UTC")
    assert windows.validation_end == pd.Timestamp("2026-01-11", tz="UTC")


def test_sample_rows_is_uniform_keeps_order_and_is_repeatable() -> None:
    frame = synthetic_frame(days=10, rows_per_day=300).df
    sample = training.sample_rows(frame, 1000, random_state=3)
    assert len(sample) == 1000 and sample.index.is_monotonic_increasing
    assert sample.index.equals(training.sample_rows(frame, 1000, random_state=3).index)
    # uniform: every day is there in about its share, the label's rate is kept
    per_day = sample["event_timestamp"].dt.floor("D").value_counts()
    assert len(per_day) == 10 and per_day.between(60, 140).all()
    assert abs(sample["is_fraud"].mean() - frame["is_fraud"].mean()) < 0.02
    assert training.sample_rows(frame, None, 3) is frame and training.sample_rows(frame, 5000, 3) is frame


def test_per_model_dvc_outputs_are_named_after_the_model() -> None:
    assert training.metrics_file("customer-spend") == Path("metrics/customer-spend/train.json")
    assert training.plots_dir("fraud-detector") == Path("metrics/fraud-detector/plots")
    assert training.model_record("customer-spend") == Path("model/customer-spend.json")


def test_pipeline_and_predict_per_task() -> None:
    from glue.settings import EstimatorSpec

    frame = synthetic_frame(days=5, rows_per_day=100)
    binary = training.build_pipeline("binary_classification", EstimatorSpec(type="logistic_regression"),
                                     frame.X, 0).fit(frame.X, frame.y)
    scores = training.predict(binary, "binary_classification", frame.X)
    assert scores.shape == (len(frame.df),) and ((scores >= 0) & (scores <= 1)).all()
    spend = synthetic_spend_frame(days=5, customers=50)
    for kind in ("ridge", "linear_regression", "hist_gradient_boosting", "random_forest"):
        spec = EstimatorSpec(type=kind, params={"n_estimators": 10} if kind == "random_forest" else {})
        model = training.build_pipeline("regression", spec, spend.X, 0).fit(spend.X, spend.y)
        values = training.predict(model, "regression", spend.X)
        assert values.shape == (len(spend.df),) and values.max() > 1.0  # values, not probabilities
    with pytest.raises(GlueError, match="ridge .* not valid for task binary_classification"):
        training.build_pipeline("binary_classification", EstimatorSpec(type="ridge"), frame.X, 0)
    with pytest.raises(GlueError, match="not valid for task regression"):
        training.build_pipeline("regression", EstimatorSpec(params={"no_such_knob": 1}), spend.X, 0)


def test_evaluation_metrics_per_task() -> None:
    import numpy as np

    y = np.array([0, 0, 1, 1])
    binary = training.evaluation_metrics("binary_classification", y, np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    assert binary["roc_auc"] == pytest.approx(0.75) and binary["decision_threshold"] == 0.5
    assert binary["precision_at_threshold"] == pytest.approx(0.5) and binary["flagged_rate"] == 0.5
    values = np.array([10.0, 20.0, 30.0, 40.0])
    regression = training.evaluation_metrics("regression", values, values + np.array([1, -1, 1, -1]), None)
    assert regression["rmse"] == pytest.approx(1.0) and regression["mae"] == pytest.approx(1.0)
    assert regression["r2"] == pytest.approx(1 - 4 / 500)
    assert regression["mean_label"] == pytest.approx(25.0)
    assert "roc_auc" not in regression and "rmse" not in binary


@pytest.mark.slow
def test_train_logs_registers_and_tags_lineage(tmp_project: Path) -> None:
    from mlflow import MlflowClient

    from glue.adapters import mlflow
    from glue.settings import get_settings

    head = _git_project(tmp_project)
    settings = get_settings()
    model_spec = settings.model("fraud-detector")
    result = training.train(settings, model_spec, synthetic_frame())
    assert result.task == "binary_classification" and result.registered_model == "fraud-detector"

    # the run: params, metrics with a learnt signal, plots and importance as artifacts
    tags, params, metrics = mlflow.run_data(result.run_id)
    assert params["estimator.type"] == "hist_gradient_boosting"
    assert params["estimator.params.max_iter"] == "200"
    assert params["validation_days"] == "7"
    assert params["task"] == "binary_classification" and params["decision_threshold"] == "0.5"
    assert params["feature_service"] == "fraud_model_v1"
    assert metrics["roc_auc"] > 0.8 and metrics["average_precision"] > 0.3
    for name in ("precision_at_threshold", "recall_at_threshold", "log_loss", "brier_score",
                 "train_rows", "validation_rows", "train_positives", "validation_positives"):
        assert name in metrics
    assert metrics["train_rows"] + metrics["validation_rows"] == 4500
    assert metrics["train_rows_available"] == metrics["train_rows"]  # under max_train_rows: every row
    assert tags[contract.TRAIN_SAMPLE] == "all rows"
    assert 0 < metrics["validation_positives"] < metrics["train_positives"]
    assert tags[contract.TASK] == "binary_classification" and tags[contract.LABEL] == "is_fraud"
    artifacts = set(mlflow.run_artifacts(result.run_id))
    for plot in ("roc_curve_plot", "precision_recall_curve_plot", "calibration_curve_plot",
                 "confusion_matrix"):
        assert f"{mlflow.EVALUATE_PREFIX}{plot}.png" in artifacts
    assert {"feature_importance.png", "feature_importance.json", contract.FEAST_FEATURES_FILE} <= artifacts
    monitoring = set(mlflow.run_artifacts(result.run_id, "monitoring"))
    assert {contract.REFERENCE_ARTIFACT, contract.VALIDATION_ARTIFACT} <= monitoring
    assert contract.RESIDUALS_PNG not in artifacts  # a regression's picture

    # the registered version: alias challenger, every lineage fact as a tag
    client = MlflowClient()
    version = client.get_model_version_by_alias("fraud-detector", contract.CHALLENGER)
    assert str(version.version) == result.version and version.run_id == result.run_id
    expected = {
        contract.GIT_COMMIT: head,
        contract.GIT_DIRTY: "false",
        # the caller gave the frame: no project data was read, and dvc.lock's hash is not claimed
        contract.DVC_DATA_VERSION: lineage.FRAME_GIVEN,
        contract.VALIDATION_SUMMARY: "data/validated/summary.json",
        contract.FEATURE_SERVICE: "fraud_model_v1",
        contract.FEAST_FEATURE_SERVICE: "fraud_model_v1",
        contract.VALIDATION_START: "2026-01-24T00:00:00+00:00",
        contract.VALIDATION_END: "2026-01-31T00:00:00+00:00",
        contract.TRAIN_START: "2026-01-01T00:00:00+00:00",
        contract.TRAIN_RUN_ID: result.run_id,
        contract.TASK: "binary_classification",
        contract.LABEL: "is_fraud",
    }
    for key, value in expected.items():
        assert version.tags[key] == value, key
        if key != contract.TRAIN_RUN_ID:
            assert tags[key] == value, key
    assert len(version.tags[lineage.VALIDATION_SUMMARY_SHA256]) == 64
    assert "customer_daily:txn_count_1d" in version.tags[contract.FEATURE_REFS]
    assert contract.feature_columns(version.tags) == synthetic_frame().feature_columns
    train_params = json.loads(version.tags[contract.TRAIN_PARAMS])
    assert train_params["validation_days"] == 7 and train_params["task"] == "binary_classification"
    assert train_params["estimator"]["type"] == "hist_gradient_boosting"
    experiment = client.get_experiment(client.get_run(result.run_id).info.experiment_id)
    assert experiment.name == "fraud-detector-training"

    # artifacts landed in the profile's artifact dir; the model loads and scores
    assert any(settings.mlflow_artifacts_dir.rglob("model.pkl"))
    model = mlflow.load_sklearn_model(f"models:/fraud-detector@{contract.CHALLENGER}")
    assert model.predict_proba(synthetic_frame().X.head(3)).shape == (3, 2)

    # DVC metrics and plots, per model
    train_json = json.loads((tmp_project / training.metrics_file("fraud-detector")).read_text())
    assert train_json["average_precision"] == pytest.approx(metrics["average_precision"])
    assert train_json["validation_positives"] == metrics["validation_positives"]
    plots = tmp_project / training.plots_dir("fraud-detector")
    roc = pd.read_csv(plots / "roc_curve.csv")
    assert list(roc.columns) == ["fpr", "tpr"] and len(roc) > 10
    assert list(pd.read_csv(plots / "pr_curve.csv").columns) == ["recall", "precision"]
    record = json.loads((settings.data_dir / training.model_record("fraud-detector")).read_text())
    assert record["version"] == result.version and record["run_id"] == result.run_id
    assert record["registered_model"] == "fraud-detector"
    assert "version " + result.version in result.summary() and "positive" in result.summary()
    # the other model has nothing yet
    assert not (tmp_project / training.metrics_file("customer-spend")).exists()

    # MLflow datasets: training and validation sets with glue's source, the validation metrics
    # linked to the LoggedModel and to the validation set
    inputs = {i.tags[0].value: i.dataset for i in client.get_run(result.run_id).inputs.dataset_inputs}
    assert {"training", "validation"} <= set(inputs)  # and mlflow.evaluate's own
    for context in ("training", "validation"):
        dataset = inputs[context]
        assert dataset.source_type == contract.DATASET_SOURCE_TYPE
        assert dataset.name == f"fraud_model_v1:{context}"
        source = json.loads(dataset.source)
        assert source["feature_service"] == "fraud_model_v1"
        assert source["dvc_data_version"] == lineage.FRAME_GIVEN
    assert json.loads(inputs["validation"].source)["window_start"].startswith("2026-01-24")
    # the model card: markdown and JSON on the run, the gate still to come, metrics by channel
    card = mlflow.read_run_json(result.run_id, contract.MODEL_CARD_JSON)
    assert card["model"]["name"] == "fraud-detector" and card["model"]["version"] == result.version
    assert card["intended_use"].startswith("Score each card transaction")
    assert card["gate"]["decision"].startswith("pending") and card["gate"]["approver"] == "none yet"
    assert card["data"]["validation_rows"] == metrics["validation_rows"]
    assert card["data"]["dvc_data_version"] == lineage.FRAME_GIVEN
    by_channel = card["metrics"]["by_segment"]["segments"]
    assert set(by_channel) == {"online", "in_store", "atm"}
    assert sum(s["rows"] for s in by_channel.values()) == metrics["validation_rows"]
    assert card["metrics"]["overall"]["average_precision"] == pytest.approx(metrics["average_precision"])
    markdown = Path(mlflow.download_artifact(result.run_id, contract.MODEL_CARD_MARKDOWN,
                                             tmp_project / "card")).read_text()
    assert markdown.startswith(f"# Model card: fraud-detector version {result.version}")
    assert "### By `channel`" in markdown and "| online |" in markdown

    logged = client.get_logged_model(result.model_uri.removeprefix("models:/"))
    linked = {m.key for m in logged.metrics if m.dataset_name == "fraud_model_v1:validation"}
    assert {"average_precision", "roc_auc", "train_rows"} <= linked


@pytest.mark.slow
def test_train_a_regression_logs_its_metrics_residuals_and_task(tmp_project: Path) -> None:
    import numpy as np
    from mlflow import MlflowClient

    from glue.adapters import mlflow
    from glue.settings import get_settings

    head = _git_project(tmp_project)
    settings = get_settings()
    # fitted on a uniform sample of the 23 x 150 training rows (params.yaml max_train_rows)
    spec = settings.model("customer-spend").model_copy(update={"max_train_rows": 2000})
    frame = synthetic_spend_frame()
    result = training.train(settings, spec, frame)
    assert result.task == "regression" and result.registered_model == "customer-spend"

    tags, params, metrics = mlflow.run_data(result.run_id)
    assert params["task"] == "regression" and params["estimator.type"] == "hist_gradient_boosting"
    assert params["estimator.params.max_iter"] == "150"
    assert params["feature_service"] == "spend_model_v1" and params["n_features"] == str(len(SPEND_FEATURES))
    # the regression's metrics, with a learnt signal (noise 20 on a spread of ~75)
    assert metrics["r2"] > 0.5
    assert 0 < metrics["mae"] <= metrics["rmse"] < 60
    assert metrics["train_rows_available"] == 23 * 150 and metrics["validation_rows"] == 7 * 150
    assert metrics["train_rows"] == 2000 and params["max_train_rows"] == "2000"
    assert tags[contract.TRAIN_SAMPLE] == f"uniform 2000 of {23 * 150} rows (max_train_rows)"
    assert metrics["mean_label"] == pytest.approx(frame.df[frame.df["event_timestamp"] >= pd.Timestamp(
        "2026-01-24", tz="UTC")]["spend_next_7d"].mean())
    for binary_only in ("roc_auc", "average_precision", "train_positives", "validation_positives",
                        "decision_threshold"):
        assert binary_only not in metrics
    assert any(k.startswith(mlflow.EVALUATE_PREFIX) for k in metrics)  # MLflow's regressor evaluation
    assert tags[contract.TASK] == "regression" and tags[contract.LABEL] == "spend_next_7d"

    artifacts = set(mlflow.run_artifacts(result.run_id))
    assert {contract.RESIDUALS_PNG, "feature_importance.png", "feature_importance.json",
            contract.FEAST_FEATURES_FILE} <= artifacts
    monitoring = set(mlflow.run_artifacts(result.run_id, "monitoring"))
    assert {contract.REFERENCE_ARTIFACT, contract.VALIDATION_ARTIFACT} <= monitoring
    assert f"{mlflow.EVALUATE_PREFIX}roc_curve_plot.png" not in artifacts
    importance = json.loads((Path(mlflow.download_artifact(
        result.run_id, "feature_importance.json", tmp_project / "dl"))).read_text())
    assert set(importance) == set(SPEND_FEATURES)
    assert next(iter(importance)) == "amount_sum_7d"  # the strongest driver of the label

    # the registered version: its own name, alias challenger, task and lineage tags
    client = MlflowClient()
    version = client.get_model_version_by_alias("customer-spend", contract.CHALLENGER)
    assert str(version.version) == result.version == "1"
    for key, value in {contract.TASK: "regression", contract.LABEL: "spend_next_7d",
                       contract.FEATURE_SERVICE: "spend_model_v1", contract.GIT_COMMIT: head,
                       contract.DVC_DATA_VERSION: lineage.FRAME_GIVEN,
                       contract.VALIDATION_START: "2026-01-24T00:00:00+00:00",
                       contract.VALIDATION_END: "2026-01-31T00:00:00+00:00",
                       contract.TRAIN_RUN_ID: result.run_id}.items():
        assert version.tags[key] == value, key
    assert json.loads(version.tags[contract.TRAIN_PARAMS])["decision_threshold"] is None
    card = mlflow.read_run_json(result.run_id, contract.MODEL_CARD_JSON)
    assert card["limitations"].startswith("unknown (params.yaml models.customer-spend.card.limitations")
    assert card["metrics"]["by_segment"] == {} and "rmse" in card["metrics"]["overall"]
    experiment = client.get_experiment(client.get_run(result.run_id).info.experiment_id)
    assert experiment.name == "customer-spend-training"
    model = mlflow.load_sklearn_model(f"models:/customer-spend@{contract.CHALLENGER}")
    predicted = training.predict(model, "regression", frame.X.head(50))
    assert predicted.shape == (50,) and np.corrcoef(predicted, frame.y.head(50))[0, 1] > 0.7

    # DVC metrics and the regression's plot tables under the model's own folder
    train_json = json.loads((tmp_project / training.metrics_file("customer-spend")).read_text())
    assert train_json["rmse"] == pytest.approx(metrics["rmse"])
    assert train_json["r2"] == pytest.approx(metrics["r2"])
    plots = tmp_project / training.plots_dir("customer-spend")
    assert sorted(p.name for p in plots.iterdir()) == ["predicted_vs_actual.csv", "residuals.csv"]
    pva = pd.read_csv(plots / "predicted_vs_actual.csv")
    assert list(pva.columns) == ["actual", "predicted"] and 10 < len(pva) <= 500
    assert pva["predicted"].is_monotonic_increasing
    residuals = pd.read_csv(plots / "residuals.csv")
    assert list(residuals.columns) == ["predicted", "residual"]
    record = json.loads((settings.data_dir / training.model_record("customer-spend")).read_text())
    assert record["version"] == result.version and record["registered_model"] == "customer-spend"
    assert "rmse" in result.summary() and "r2" in result.summary()
    assert not (tmp_project / training.metrics_file("fraud-detector")).exists()

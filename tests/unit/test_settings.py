"""The settings object: profiles, overrides, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from glue.errors import SettingsError
from glue.settings import GateParams, load_settings


def _edit_params(project: Path, change: Any) -> Path:
    """Apply `change` to the parsed params.yaml of the project and write it back."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _settings_error(project: Path, change: Any) -> str:
    path = _edit_params(project, change)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert str(path) in message
    return message


def test_local_profile_is_the_default_and_uses_embedded_stores(tmp_project: Path) -> None:
    settings = load_settings()
    assert settings.profile == "local"
    assert settings.project_dir == tmp_project.resolve()
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_project.resolve()}/.glue/mlflow.db"
    assert settings.mlflow_registry_uri == settings.mlflow_tracking_uri
    assert settings.raw_events_dir == tmp_project.resolve() / "data/raw/transactions"
    assert settings.validated_events_dir == tmp_project.resolve() / "data/validated/transactions"
    assert settings.params.validation.columns["amount"].min == 0.01
    assert settings.params.data.events == "transactions"
    assert settings.params.data.event_id == "transaction_id"
    assert settings.params.features.transform == "feature_repo/transform.py:build_tables"
    assert settings.params.demo["seed"] == 42  # the generator's own section, passed as is


def test_the_demo_declares_two_models_of_two_tasks(tmp_project: Path) -> None:
    settings = load_settings()
    assert [m.name for m in settings.models] == ["fraud-detector", "customer-spend"]
    fraud, spend = settings.model("fraud-detector"), settings.model("customer-spend")
    assert (fraud.task, fraud.feature_service, fraud.label.view, fraud.label.field) == (
        "binary_classification", "fraud_model_v1", "transaction_labels", "is_fraud")
    assert fraud.decision_threshold == 0.5 and fraud.gate.metric == "average_precision"
    assert fraud.metric_direction == "max"
    assert fraud.experiment_name == "fraud-detector-training"
    assert fraud.monitoring.experiment_name == "fraud-detector-monitoring"
    assert (spend.task, spend.feature_service, spend.label.source, spend.label.field) == (
        "regression", "spend_model_v1", "data/raw/spend_labels", "spend_next_7d")
    assert spend.label.view is None and spend.label.join_keys == ["customer_id"]
    assert spend.label.known_at == "label_timestamp"
    assert spend.decision_threshold is None
    assert spend.gate.metric == "rmse" and spend.metric_direction == "min"
    assert spend.monitoring.quality.metric == "rmse"
    assert spend.experiment_name == "customer-spend-training"


def test_a_model_is_named_or_the_only_one(tmp_project: Path) -> None:
    settings = load_settings()
    with pytest.raises(SettingsError, match="2 models .*fraud-detector, customer-spend.*--model"):
        settings.model()
    with pytest.raises(SettingsError, match="no model 'nope'.*fraud-detector, customer-spend"):
        settings.model("nope")
    _edit_params(tmp_project, lambda p: p["models"].pop("customer-spend"))
    assert load_settings().model().name == "fraud-detector"


def test_defaults_are_merged_under_each_model_key_by_key(tmp_project: Path) -> None:
    def change(p: dict) -> None:
        p["defaults"]["gate"]["bootstrap_samples"] = 400
        p["defaults"]["random_state"] = 7
        p["defaults"]["monitoring"]["quality"]["window_days"] = 5
        p["models"]["fraud-detector"]["validation_days"] = 3  # the model's own value wins
        p["models"]["fraud-detector"]["gate"]["confidence"] = 0.9

    _edit_params(tmp_project, change)
    settings = load_settings()
    fraud, spend = settings.model("fraud-detector"), settings.model("customer-spend")
    # from defaults:, for both models
    assert fraud.gate.bootstrap_samples == spend.gate.bootstrap_samples == 400
    assert fraud.random_state == spend.random_state == 7
    assert fraud.reference_rows == spend.reference_rows == 50_000
    assert fraud.monitoring.quality.window_days == spend.monitoring.quality.window_days == 5
    assert fraud.monitoring.drift.drift_share == spend.monitoring.drift.drift_share == 0.2
    assert fraud.monitoring.cooldown_days == 3
    # a model's own entries override them, and only the keys it names
    assert (fraud.validation_days, spend.validation_days) == (3, 7)
    assert (fraud.gate.confidence, spend.gate.confidence) == (0.9, 0.95)
    assert fraud.gate.min_improvement == 0.005 and spend.gate.min_improvement == 1.0
    assert fraud.gate.floors == {"average_precision": 0.2, "roc_auc": 0.7}
    assert spend.gate.floors == {"r2": 0.1}
    assert spend.monitoring.quality.max_drop == 50.0 and spend.monitoring.quality.min_positives == 1
    assert spend.monitoring.quality.confidence == fraud.monitoring.quality.confidence == 0.9
    assert fraud.monitoring.quality.max_drop == 0.1


def test_an_unknown_metric_for_the_task_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"]["gate"].update(
        metric="average_precision"))
    assert "models.customer-spend" in message and "gate.metric" in message
    assert "'average_precision' is not a metric of task regression" in message
    assert "rmse, mae, r2" in message


def test_a_floor_on_a_metric_of_another_task_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"]["gate"]["floors"].update(
        rmse=10.0))
    assert "models.fraud-detector" in message and "gate.floors.rmse" in message
    assert "not a metric of task binary_classification" in message


def test_a_regression_with_a_decision_threshold_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"].update(
        decision_threshold=0.5))
    assert "models.customer-spend" in message and "decision_threshold" in message
    assert "task regression has no decision threshold" in message


def test_a_threshold_outside_0_1_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"].update(
        decision_threshold=1.5))
    assert "models.fraud-detector" in message and "decision_threshold" in message


def test_a_label_with_both_view_and_source_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"]["label"].update(
        view="transaction_labels"))
    assert "models.customer-spend.label" in message
    assert "exactly one of 'view'" in message and "'source'" in message


def test_a_label_with_neither_view_nor_source_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"]["label"].pop("view"))
    assert "models.fraud-detector.label" in message and "exactly one of 'view'" in message


def test_a_labels_source_without_join_keys_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"]["label"].pop("join_keys"))
    assert "models.customer-spend.label" in message and "join_keys" in message


def test_an_estimator_of_another_task_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"]["estimator"].update(
        type="ridge"))
    assert "models.fraud-detector" in message and "estimator.type" in message
    assert "'ridge' is not an estimator for task binary_classification" in message


def test_an_unknown_task_or_key_names_the_model(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"].update(task="ranking"))
    assert "models.customer-spend.task" in message
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"].update(
        task="regression", colour="red"))
    assert "models.customer-spend.colour" in message


def test_a_person_approves_on_the_profiles_given_and_bad_approval_names_the_model(
        tmp_project: Path) -> None:
    _edit_params(tmp_project, lambda p: p["defaults"].update(approval={"by": "person"}))
    settings = load_settings()
    for model in settings.models:  # from defaults: every model, on prod and ray only
        assert model.approval.person_required("prod") and model.approval.person_required("ray")
        assert not model.approval.person_required("local")
        assert model.approval.timeout_hours == 72.0
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"].update(
        approval={"by": "a manager"}))
    assert "models.customer-spend.approval.by" in message and "'gate' or 'person'" in message
    message = _settings_error(tmp_project, lambda p: p["models"]["customer-spend"].update(
        approval={"by": "person", "profiles": ["staging"]}))
    assert "models.customer-spend.approval.profiles" in message
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"].update(
        approval={"by": "person", "timeout_hours": 0}))
    assert "models.fraud-detector.approval.timeout_hours" in message


def test_a_project_without_models_is_refused(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p.update(models={}))
    assert "declares no model" in message
    message = _settings_error(tmp_project, lambda p: p.pop("models"))
    assert "models" in message


def test_the_old_sections_are_refused(tmp_project: Path) -> None:
    message = _settings_error(tmp_project, lambda p: p.update(train={"validation_days": 7}))
    assert "train" in message


def test_gate_params_default_to_the_task_metric() -> None:
    assert GateParams().metric is None  # resolved by the model spec: average_precision, rmse
    assert GateParams().floors == {}


def test_environment_overrides_a_path(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUE_DATA_DIR", "/somewhere/else")
    assert load_settings().data_dir == Path("/somewhere/else")


def test_unknown_profile_is_named(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUE_PROFILE", "staging")
    with pytest.raises(SettingsError, match="unknown profile 'staging'.*local, prod"):
        load_settings()


def test_prod_without_service_address_says_which_variable(
    tmp_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLUE_MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SettingsError, match="GLUE_MLFLOW_TRACKING_URI"):
        load_settings(profile="prod")


def test_bad_params_name_the_file_and_field(tmp_project: Path) -> None:
    params = tmp_project / "params.yaml"
    text = params.read_text()
    assert text.count("min_rows: 100\n") == 1
    params.write_text(text.replace("min_rows: 100\n", "min_rows: a hundred\n"))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(params) in str(err.value)
    assert "validation.min_rows" in str(err.value)
    params.write_text(text)
    message = _settings_error(tmp_project, lambda p: p["models"]["fraud-detector"].update(
        validation_days="seven"))
    assert "models.fraud-detector.validation_days" in message


def test_invalid_yaml_is_reported(tmp_project: Path) -> None:
    (tmp_project / "params.yaml").write_text("demo: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings()


def test_missing_project_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLUE_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="no params.yaml"):
        load_settings()

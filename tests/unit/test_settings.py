"""The settings object: profiles, overrides, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from glue.errors import SettingsError
from glue.settings import load_settings


def test_local_profile_is_the_default_and_uses_embedded_stores(tmp_project: Path) -> None:
    settings = load_settings()
    assert settings.profile == "local"
    assert settings.project_dir == tmp_project.resolve()
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_project.resolve()}/.glue/mlflow.db"
    assert settings.mlflow_registry_uri == settings.mlflow_tracking_uri
    assert settings.raw_transactions_dir == tmp_project.resolve() / "data/raw/transactions"
    assert settings.params.validation.columns["amount"].min == 0.01


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
    params.write_text(params.read_text().replace("seed: 42", "seed: forty-two"))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(params) in str(err.value)
    assert "demo.seed" in str(err.value)


def test_invalid_yaml_is_reported(tmp_project: Path) -> None:
    (tmp_project / "params.yaml").write_text("demo: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings()


def test_missing_project_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLUE_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="no params.yaml"):
        load_settings()

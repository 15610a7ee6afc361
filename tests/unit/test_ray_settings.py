"""The `ray` profile's settings: its Feast configuration, its cluster, the search spec (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from glue.errors import SettingsError
from glue.settings import load_settings, ray_cluster


@pytest.fixture
def ray_env(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLUE_PROFILE", "ray")
    monkeypatch.setenv("GLUE_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    for name in ("GLUE_RAY_HOST", "GLUE_RAY_PORT", "GLUE_RAY_WORKERS", "GLUE_RAY_CPUS",
                 "GLUE_RAY_OBJECT_STORE_MB", "GLUE_RAY_ADDRESS", "GLUE_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_project


def test_the_ray_profile_reads_its_own_feast_yaml_and_a_small_loopback_cluster(ray_env: Path) -> None:
    settings = load_settings()
    assert settings.profile == "ray"
    assert settings.feast_yaml == ray_env.resolve() / "feature_repo" / "ray" / "feature_store.yaml"
    assert settings.ray is not None and settings.ray.address == "127.0.0.2:6390"
    assert (settings.ray.workers, settings.ray.cpus, settings.ray.object_store_mb) == (1, 1, 256)
    assert settings.warehouse_uri is None  # scores go to files unless GLUE_WAREHOUSE_URI says
    assert load_settings("local").ray is None


def test_the_cluster_follows_the_environment(ray_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUE_RAY_PORT", "7100")
    monkeypatch.setenv("GLUE_RAY_WORKERS", "2")
    cluster, state = ray_cluster(ray_env)
    assert cluster.address == "127.0.0.2:7100" and cluster.workers == 2
    assert state == ray_env.resolve() / ".glue" / "ray"
    monkeypatch.setenv("GLUE_RAY_ADDRESS", "10.0.0.5:6379")
    assert load_settings().ray.address == "10.0.0.5:6379"


def test_glues_cluster_has_a_token_of_its_own(ray_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node and driver of glue's cluster gets token mode and the cluster's own token file
    (not ~/.ray/auth_token); a cluster glue did not start keeps the user's RAY_AUTH_* settings."""
    cluster, state = ray_cluster(ray_env)
    assert cluster.token_file == state / "auth_token"
    assert cluster.auth_env() == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(state / "auth_token")}
    assert load_settings().ray.auth_env() == cluster.auth_env()
    monkeypatch.setenv("GLUE_RAY_ADDRESS", "10.0.0.5:6379")
    assert load_settings().ray.token_file is None and load_settings().ray.auth_env() == {}


def test_a_bad_cluster_setting_names_the_variable(ray_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUE_RAY_PORT", "80")
    with pytest.raises(SettingsError, match="GLUE_RAY_.*port"):
        load_settings()


def test_the_ray_profile_needs_the_tracking_server(ray_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLUE_MLFLOW_TRACKING_URI")
    with pytest.raises(SettingsError, match="profile 'ray' needs GLUE_MLFLOW_TRACKING_URI"):
        load_settings()


def test_the_feast_yaml_is_prods_stores_with_rays_offline_store_and_engine() -> None:
    repo = Path(__file__).resolve().parents[2] / "feature_repo"
    ray_yaml = yaml.safe_load((repo / "ray" / "feature_store.yaml").read_text())
    prod_yaml = yaml.safe_load((repo / "prod" / "feature_store.yaml").read_text())
    assert ray_yaml["registry"] == prod_yaml["registry"]
    assert ray_yaml["online_store"] == prod_yaml["online_store"]
    assert ray_yaml["offline_store"]["type"] == "ray"
    assert ray_yaml["batch_engine"]["type"] == "ray.engine"
    assert ray_yaml["offline_store"]["ray_address"] == ray_yaml["batch_engine"]["ray_address"] \
        == "${FEAST_RAY_ADDRESS}"


def test_a_search_without_candidates_names_the_model(tmp_project: Path) -> None:
    path = tmp_project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["models"]["fraud-detector"]["estimator"]["search"] = {"grid": {"max_iter": []}}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(SettingsError, match=r"models.fraud-detector.estimator.search.*max_iter has none"):
        load_settings()

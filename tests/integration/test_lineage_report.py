"""`glue lineage` and `glue reproduce`: one record per model version, read back from a real registry,
feature discovery, and the model rebuilt from its record alone.

One small project (tests/conftest.py build_small_champion_project: both demo models trained on real
data and promoted, a git + DVC repository with its small-model params committed, so the tree is
clean when they train) is asked through the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import build_small_champion_project, clone_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

GLUE = str(Path(sys.executable).with_name("glue"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    import os

    from glue.settings import get_settings

    root = clone_project(tmp_path_factory.mktemp("lineage") / "project", {})
    _commit_small_params(root)
    saved = os.environ.get("GLUE_PROJECT_DIR")
    os.environ["GLUE_PROJECT_DIR"] = str(root)
    try:
        settings = build_small_champion_project(root)
        yield root, settings
    finally:
        if saved is None:
            os.environ.pop("GLUE_PROJECT_DIR", None)
        else:
            os.environ["GLUE_PROJECT_DIR"] = saved
        get_settings.cache_clear()


def _commit_small_params(root: Path) -> None:
    """The params build_small_champion_project writes, committed first: it then rewrites the same bytes."""
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    for spec in params["models"].values():
        spec["validation_days"] = 4
        spec["estimator"]["params"]["max_iter"] = 60
        spec["gate"]["floors"] = {}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "small"],
                   cwd=root, check=True)


def _glue(root: Path, *args: str, ok: bool = True, **glue_env: str) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GLUE_")} | {"GLUE_PROJECT_DIR": str(root)}
    env |= glue_env
    proc = subprocess.run([GLUE, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _log_predictions(settings: Any, model: str, version: str, arms: dict[str, int]) -> None:
    """What `glue serve` writes, through its own writer (glue/serving/prediction_writer.py)."""
    from glue.prediction_log import log_folder
    from glue.serving.metrics import Metrics
    from glue.serving.prediction_writer import LogBatch, PredictionLog

    writer = PredictionLog(log_folder(settings), Metrics(), max_rows=10_000)
    writer.start()
    for arm, n in arms.items():
        writer.submit(LogBatch(at=time.time(), request_id=f"r-{arm}", model_name=model,
                               requests=[{"customer_id": i} for i in range(n)], rows=np.arange(n), arm=arm,
                               version=version, columns=("x",), features=np.zeros((n, 1)),
                               outputs=np.full(n, 0.1), threshold=0.5))
    writer.stop()


def test_lineage_of_the_champion_is_its_whole_record(project: tuple[Path, Any]) -> None:
    from glue.adapters import dvc

    root, settings = project
    _log_predictions(settings, "fraud-detector", "1", {"champion": 5, "shadow": 2})
    record = json.loads(_glue(root, "lineage", "models:/fraud-detector@champion", "--json").stdout)

    assert record["model"]["name"] == "fraud-detector" and record["model"]["version"] == "1"
    assert "champion" in record["model"]["aliases"] and record["model"]["task"] == "binary_classification"
    # the data version is exactly what it read: the same DVC hash of data/raw, and on the remote
    data = record["data"]
    now = dvc.snapshot(root, settings.raw_dir, "local", settings.dvc_remote)
    assert data["dvc_data_version"] == now.md5 and data["dvc_data_path"] == "data/raw"
    assert data["dvc_remote"] == str(settings.dvc_remote) and int(data["files"]) == now.files
    assert len(data["validated_batches"]) == 15
    assert data["validation_summary"] == "data/validated/summary.json"
    features = record["features"]
    assert features["feature_service"] == "fraud_model_v1"
    assert "customer_transactions" in features["feature_views"] and features["columns"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    assert record["code"]["git_commit"] == head.strip()
    assert record["code"]["profile"] == "local" and record["code"]["git_dirty"] == "false"
    assert record["training_window"]["validation_end"].startswith("2026-01-1")
    assert record["params"]["estimator"]["type"] == "hist_gradient_boosting"
    assert 0 < record["metrics"]["average_precision"] <= 1
    assert record["gate"]["decision"] == "passed" and record["approver"].startswith("automatic gate")
    assert record["drift_reference"].startswith("runs:/")
    assert record["drift_reference"].endswith("monitoring/reference.parquet")
    assert record["served"] == {"champion": 5, "shadow": 2}

    text = _glue(root, "lineage", "models:/customer-spend/1").stdout  # the text form, by version
    assert "feature_service: spend_model_v1" in text and "served:\n  none" in text


def test_feature_view_usage_lists_every_model_version_on_it(project: tuple[Path, Any]) -> None:
    root, _ = project
    usage = json.loads(_glue(root, "lineage", "--feature-view", "customer_transactions", "--json").stdout)
    users = {(u["model"], u["version"]): u for u in usage["used_by"]}
    assert set(users) == {("fraud-detector", "1"), ("customer-spend", "1")}  # the view both models reuse
    assert all("champion" in u["aliases"] and u["features"] for u in users.values())
    merchant = json.loads(_glue(root, "lineage", "--feature-view", "merchant_risk", "--json").stdout)
    assert {u["model"] for u in merchant["used_by"]} == {"fraud-detector"}


def test_a_bad_question_gets_a_clear_error(project: tuple[Path, Any]) -> None:
    root, _ = project
    unknown_view = _glue(root, "lineage", "--feature-view", "no_such_view", ok=False)
    assert "no_such_view" in unknown_view.stderr and "customer_transactions" in unknown_view.stderr
    assert "no such model version" in _glue(root, "lineage", "models:/fraud-detector/99", ok=False).stderr
    assert "not a registered model URI" in _glue(root, "lineage", "runs:/abc/model", ok=False).stderr
    assert "one of the two" in _glue(root, "lineage", ok=False).stderr


def test_reproduce_rebuilds_the_champion_from_its_record_alone(project: tuple[Path, Any]) -> None:
    """From a clean clone of the project, with the team's registry: the recorded commit in a
    worktree, the recorded data from the DVC remote, that commit's code; the same predictions on
    the held-out rows and the same metrics."""
    root, _ = project
    clean = root.parent / "clean-clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clean)], check=True)
    registry = f"sqlite:///{root / '.glue' / 'mlflow.db'}"
    proc = _glue(clean, "reproduce", "models:/fraud-detector@champion", "--json",
                 GLUE_MLFLOW_TRACKING_URI=registry, GLUE_MLFLOW_REGISTRY_URI=registry)
    result = json.loads(proc.stdout)
    assert result["verdict"] == "identical", json.dumps(result, indent=1)
    assert result["ok"] and result["max_abs_difference"] == 0.0 and result["sample_rows"] > 100
    ap = result["metrics"]["average_precision"]
    assert ap["recorded"] == ap["reproduced"]
    assert result["reasons"] == []
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=clean, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1  # the scratch worktree is gone


def test_reproduce_says_why_not_when_the_data_version_is_gone(project: tuple[Path, Any]) -> None:
    root, _ = project
    remote = root / ".glue" / "dvc-remote"
    aside = remote.with_name("dvc-remote-aside")
    remote.rename(aside)
    try:
        proc = _glue(root, "reproduce", "models:/customer-spend@champion", "--json", ok=False)
    finally:
        aside.rename(remote)
    result = json.loads(proc.stdout)
    assert result["verdict"] == "not reproducible" and not result["ok"]
    assert any("not retrievable" in reason for reason in result["reasons"])

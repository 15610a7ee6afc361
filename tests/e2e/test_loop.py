"""The whole loop, as a user runs it: the real `glue` CLI in a fresh copy of the project.

`glue run` (dvc repro + push) from nothing: Feast views applied and materialized, an MLflow run
with its artifacts, a champion carrying every lineage tag; a second `dvc repro` re-runs nothing
and a changed model parameter re-runs only train and promote. A smaller demo than the default, to
save time. The loop over time (`glue simulate`) is tests/e2e/test_simulation.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import clone_project
from tests.e2e.project_cli import DVC, FEAST, GLUE, all_files, mlflow_client, run

PROJECT_DIR = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_glue_run_builds_the_whole_loop_and_dvc_reruns_only_what_changed(tmp_path: Path) -> None:
    root = clone_project(tmp_path / "clone", {"days": 40, "transactions_per_day": 600,
                                               "customers": 1500, "merchants": 150})
    out = run([GLUE, "run"], root)
    assert "promote" in out

    # Feast: the CLI sees the applied views, and the online store answers.
    views = run([FEAST, "feature-views", "list"], root / "feature_repo")
    assert "customer_transactions" in views and "merchant_risk" in views
    online = run([GLUE, "features", "--help"], root)  # the stage is documented on the CLI
    assert "materializ" in online.lower()
    from glue.features import online_features
    from glue.settings import load_settings

    os.environ["GLUE_PROJECT_DIR"] = str(root)
    try:
        settings = load_settings("local", root)
        row = {"customer_id": 1, "merchant_id": 1, "amount": 42.0, "channel": "online",
               "card_present": False, "event_timestamp": dt.datetime(2026, 2, 10, 13, tzinfo=dt.UTC)}
        values = online_features(settings, settings.model("fraud-detector"), [row])
    finally:
        os.environ.pop("GLUE_PROJECT_DIR", None)
    assert values.notna().to_numpy().mean() > 0.5  # served features, not a frame of missing values

    # MLflow: both models of the demo (two tasks, one Feast repo), each a champion with every
    # lineage tag and its own training run, artifacts and DVC metrics.
    client = mlflow_client(root, root / ".glue" / "mlflow.db")
    for name, task, service, plot in (("fraud-detector", "binary_classification", "fraud_model_v1", None),
                                      ("customer-spend", "regression", "spend_model_v1", "residuals.png")):
        champion = client.get_model_version_by_alias(name, "champion")
        for tag in ("glue.git_commit", "glue.git_dirty", "glue.dvc_data_version", "glue.validation_summary",
                    "glue.feast_feature_service", "glue.feast_feature_refs", "glue.train_start",
                    "glue.train_end", "glue.validation_start", "glue.validation_end", "glue.gate.decision",
                    "glue.task"):
            assert champion.tags.get(tag), f"{name} champion v{champion.version} lacks {tag}"
        assert champion.tags["glue.task"] == task and champion.tags["glue.feast_feature_service"] == service
        assert not champion.tags["glue.dvc_data_version"].startswith("untracked")
        artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
        assert {"feature_importance.png", "monitoring"} <= artifacts
        assert plot is None or plot in artifacts
        assert json.loads((root / "metrics" / name / "gate.json").read_text())["promoted"] is True
    # DVC: the data version on the champions is the one `dvc repro` recorded for data/raw, and the
    # profile's remote holds it: DVC's CLI gets back exactly the raw batches and labels
    from glue.adapters import dvc as dvc_adapter

    recorded = dvc_adapter.data_version(root)
    assert recorded and recorded.endswith(".dir")
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    assert champion.tags["glue.dvc_data_version"] == recorded
    assert champion.tags["glue.dvc_remote"] == str((root / ".glue" / "dvc-remote").resolve())
    fetched = dvc_adapter.fetch(recorded, str(root / ".glue" / "dvc-remote"), tmp_path / "fetched")
    assert all_files(fetched) == all_files(root / "data" / "raw")

    # the spend model reuses the fraud model's customer view: the feature discovery a store promises
    spend = client.get_model_version_by_alias("customer-spend", "champion").tags["glue.feast_feature_refs"]
    fraud = client.get_model_version_by_alias("fraud-detector", "champion").tags["glue.feast_feature_refs"]
    assert {r for r in spend.split(",") if r.startswith("customer_transactions:")} <= set(fraud.split(","))

    # DVC: nothing changed, nothing runs (but the always-run `profile` stage, which rewrites the same
    # bytes).
    assert _ran(run([DVC, "repro"], root)) == []

    # The stores wiped behind DVC's back (dvc.lock says all is done): `glue run` finds the Feast
    # registry and the MLflow registry empty, re-runs from `features`, and reports the champion
    # the new registry holds, never the one that was lost. That second run on the same data and
    # params records the same DVC metrics: `dvc metrics diff` against the first is empty.
    subprocess.run(["git", "add", "-f", "metrics", "dvc.lock"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "run 1"],
                   cwd=root, check=True)
    first_metrics = all_files(root / "metrics")
    shutil.rmtree(root / ".glue" / "feast")
    (root / ".glue" / "mlflow.db").unlink()
    again = run([GLUE, "run"], root)
    assert "re-ran from stage features" in again, again[-3000:]
    assert "fraud-detector version 1" in again and "customer-spend version 1" in again, again[-3000:]
    rebuilt = mlflow_client(root, root / ".glue" / "mlflow.db")  # a new store: a new client
    for name in ("fraud-detector", "customer-spend"):
        assert str(rebuilt.get_model_version_by_alias(name, "champion").version) == "1"  # MLflow 3: an int
    diff = run([DVC, "metrics", "diff"], root)
    assert "metrics/" not in diff, diff
    assert all_files(root / "metrics") == first_metrics

    # a model parameter re-runs train, evaluate and promote only.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"]["fraud-detector"]["estimator"]["params"]["learning_rate"] = 0.05
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = run([DVC, "repro"], root)
    assert _ran(rerun) == ["train@fraud-detector", "evaluate@fraud-detector", "promote@fraud-detector"], rerun


def _ran(dvc_output: str) -> list[str]:
    """The stages `dvc repro` ran, but the always-run `profile` stage."""
    ran = [line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage")]
    return [stage for stage in ran if stage != "profile"]

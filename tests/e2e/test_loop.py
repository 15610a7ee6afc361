"""The whole loop, as a user runs it: the real `glue` CLI in a fresh copy of the project.

1. `glue run` (dvc repro + push) from nothing: Feast views applied and materialized, an MLflow run
   with its artifacts, a champion carrying every lineage tag; a second `dvc repro` re-runs nothing
   and a changed model parameter re-runs only train and promote.
2. `glue simulate`: day by day through the real Airflow DAGs, a spending shift on day 4: no
   retrain before it, drift caught within 2 days, a retrained challenger gated, reports in MLflow.

The first test runs a smaller demo than the default to save time; the simulation runs the
default size, the one the default monitoring policy is tuned for (~7 minutes on 2 cores).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import clone_project

PROJECT_DIR = Path(__file__).resolve().parents[2]
GLUE = str(Path(sys.executable).with_name("glue"))
DVC = str(Path(sys.executable).with_name("dvc"))
FEAST = str(Path(sys.executable).with_name("feast"))

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLUE_")}
    # as in an activated environment: `dvc repro` finds the `glue` its stages call
    path = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return {**env, "PATH": path, "GLUE_PROJECT_DIR": str(root), "TQDM_DISABLE": "1"}


def _run(args: list[str], root: Path, timeout: float = 900) -> str:
    proc = subprocess.run(args, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _client(root: Path, db: Path):  # noqa: ANN202
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    return MlflowClient(uri, uri)


def test_glue_run_builds_the_whole_loop_and_dvc_reruns_only_what_changed(tmp_path: Path) -> None:
    root = clone_project(tmp_path / "clone", {"days": 40, "transactions_per_day": 600,
                                               "customers": 1500, "merchants": 150})
    out = _run([GLUE, "run"], root)
    assert "promote" in out

    # Feast: the CLI sees the applied views, and the online store answers.
    views = _run([FEAST, "feature-views", "list"], root / "feature_repo")
    assert "customer_transactions" in views and "merchant_risk" in views
    online = _run([GLUE, "features", "--help"], root)  # the stage is documented on the CLI
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
    client = _client(root, root / ".glue" / "mlflow.db")
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
    assert _files(fetched) == _files(root / "data" / "raw")

    # the spend model reuses the fraud model's customer view: the feature discovery a store promises
    spend = client.get_model_version_by_alias("customer-spend", "champion").tags["glue.feast_feature_refs"]
    fraud = client.get_model_version_by_alias("fraud-detector", "champion").tags["glue.feast_feature_refs"]
    assert {r for r in spend.split(",") if r.startswith("customer_transactions:")} <= set(fraud.split(","))

    # DVC: nothing changed, nothing runs (but the always-run `profile` stage, which rewrites the same
    # bytes).
    assert _ran(_run([DVC, "repro"], root)) == []

    # The stores wiped behind DVC's back (dvc.lock says all is done): `glue run` finds the Feast
    # registry and the MLflow registry empty, re-runs from `features`, and reports the champion
    # the new registry holds, never the one that was lost. That second run on the same data and
    # params records the same DVC metrics: `dvc metrics diff` against the first is empty.
    subprocess.run(["git", "add", "-f", "metrics", "dvc.lock"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "run 1"],
                   cwd=root, check=True)
    first_metrics = _files(root / "metrics")
    shutil.rmtree(root / ".glue" / "feast")
    (root / ".glue" / "mlflow.db").unlink()
    again = _run([GLUE, "run"], root)
    assert "re-ran from stage features" in again, again[-3000:]
    assert "fraud-detector version 1" in again and "customer-spend version 1" in again, again[-3000:]
    for name in ("fraud-detector", "customer-spend"):
        champion = _client(root, root / ".glue" / "mlflow.db").get_model_version_by_alias(name, "champion")
        assert str(champion.version) == "1"  # MLflow 3 answers an int
    diff = _run([DVC, "metrics", "diff"], root)
    assert "metrics/" not in diff, diff
    assert _files(root / "metrics") == first_metrics

    # a model parameter re-runs train, evaluate and promote only.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"]["fraud-detector"]["estimator"]["params"]["learning_rate"] = 0.05
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = _run([DVC, "repro"], root)
    assert _ran(rerun) == ["train@fraud-detector", "evaluate@fraud-detector", "promote@fraud-detector"], rerun


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ran(dvc_output: str) -> list[str]:
    """The stages `dvc repro` ran, but the always-run `profile` stage."""
    ran = [line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage")]
    return [stage for stage in ran if stage != "profile"]


def test_simulation_detects_the_shift_retrains_and_gates(tmp_path: Path) -> None:
    # The demo's default size: the default drift policy is tuned for ~1700 transactions a day (a
    # day of a few hundred rows is too noisy for a 0.1 Wasserstein threshold on the aggregates).
    root = clone_project(tmp_path / "clone", {})
    start, shift, n = 60, 63, 6  # three quiet days, the shift, two days to catch it
    out = _run([GLUE, "simulate", "--days", str(n), "--start-day", str(start), "--model", "fraud-detector",
                "--set", f"days={start + n}", "--set", f"shift_day={shift}",
                "--set", "shift_kind=spending_change"], root, timeout=1800)
    table = [line.split() for line in out.splitlines() if line.strip()[:2].isdigit()]
    days = {int(cols[0]): {"date": cols[1], "drift": cols[3], "retrain": cols[5], "promoted": cols[6]}
            for cols in table}
    assert sorted(days) == list(range(start, start + n)), out

    assert all(days[d]["retrain"] == "no" for d in range(start, shift)), out  # quiet before the shift
    assert any(days[d]["drift"] == "yes" for d in (shift, shift + 1)), out  # caught within 2 days
    retrained = [d for d in days if days[d]["retrain"] == "yes"]
    assert retrained and min(retrained) >= shift, out

    staging = root / ".glue" / "simulation"
    client = _client(root, staging / "mlflow.db")
    # Every retrained challenger went through the gate, and only a better one became champion.
    versions = client.search_model_versions("name = 'fraud-detector'")
    gated = [v for v in versions if str(v.version) != "1"]  # MLflow 3 answers an int
    assert gated and all(v.tags.get("glue.gate.decision") for v in gated)
    for v in gated:
        promoted = v.tags["glue.gate.decision"] == "passed"
        champion_now = client.get_model_version_by_alias("fraud-detector", "champion").version
        assert (not promoted) or int(champion_now) >= int(v.version)
    # Lineage on the Airflow path (no `dvc repro` ever ran in this clone): every version trained by
    # a training DAG run carries the DVC version of exactly the data of its day, which DVC's CLI
    # gets back from the remote: the batches delivered until that day, and not one later.
    from glue.adapters import dvc as dvc_adapter

    assert not (root / "dvc.lock").exists()
    trained_on = {"1": (dt.date.fromisoformat(days[start]["date"]) - dt.timedelta(days=1)).isoformat()}
    trained_on |= {str(i + 2): days[d]["date"] for i, d in enumerate(sorted(retrained))}
    raw = staging / "raw"
    hashes = set()
    for v in [client.get_model_version("fraud-detector", "1"), *gated]:
        assert v.tags["glue.dvc_remote"] == str((root / ".glue" / "dvc-remote").resolve())
        data = v.tags["glue.dvc_data_version"]
        fetched = dvc_adapter.fetch(data, str(root / ".glue" / "dvc-remote"), tmp_path / f"v{v.version}")
        files = _files(fetched)
        assert files and all((raw / name).read_bytes() == content for name, content in files.items()
                             if name.startswith("transactions/")), f"v{v.version}: batches differ"
        batch_days = sorted(name.split("/")[1][:10] for name in files if name.startswith("transactions/"))
        assert batch_days[-1] == trained_on[str(v.version)], (v.version, batch_days[-3:])
        hashes.add(data)
    assert len(hashes) == 1 + len(gated)  # a version of its own for each day's data
    inputs = client.get_run(gated[0].run_id).inputs.dataset_inputs
    sources = [json.loads(i.dataset.source) for i in inputs if i.dataset.source_type == "glue_feast_dvc"]
    assert {s["dvc_data_version"] for s in sources} == {gated[0].tags["glue.dvc_data_version"]}

    # `glue reproduce` of a version a training DAG run trained, from a clean clone that has only the
    # registry: the recorded commit in a worktree, its data from the DVC remote, the same predictions
    clean = tmp_path / "clean-clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clean)], check=True)
    registry = f"sqlite:///{staging / 'mlflow.db'}"
    proc = subprocess.run([GLUE, "reproduce", f"models:/fraud-detector/{gated[0].version}", "--json"],
                          cwd=clean, capture_output=True, text=True, timeout=900,
                          env=_env(clean) | {"GLUE_MLFLOW_TRACKING_URI": registry,
                                             "GLUE_MLFLOW_REGISTRY_URI": registry})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reproduced = json.loads(proc.stdout)
    assert reproduced["verdict"] == "identical", json.dumps(reproduced, indent=1)
    assert reproduced["max_abs_difference"] == 0.0 and reproduced["reasons"] == []
    assert reproduced["data_version"] == gated[0].tags["glue.dvc_data_version"]

    # Reports: Evidently HTML on disk for every day, and logged to the monitoring experiment.
    for d in range(start, start + n):
        day_dir = sorted((staging / "monitoring" / "fraud-detector").iterdir())[d - start]
        assert (day_dir / "drift.html").stat().st_size > 10_000
        assert json.loads((day_dir / "decision.json").read_text())["decision"]
    experiment = client.get_experiment_by_name("fraud-detector-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == n
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "monitoring")}
    assert {"monitoring/drift.html", "monitoring/decision.json", "monitoring/metrics.prom"} <= logged

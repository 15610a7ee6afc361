"""The loop over time, as a user runs it: `glue simulate` day by day through the real Airflow DAGs.

A spending shift on the simulation's second day (of three): no retrain before it, drift caught within 2 days,
a retrained challenger gated, its lineage (the DVC version of exactly its day's data, fetched back
from the remote), `glue reproduce` of it from a clean clone, reports in MLflow. The demo's default
size, the one the default monitoring policy is tuned for (~7 minutes on 2 cores).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import clone_project
from tests.e2e.project_cli import GLUE, all_files, env_for, mlflow_client, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_simulation_detects_the_shift_retrains_and_gates(tmp_path: Path) -> None:
    # The demo's default size: the default drift policy is tuned for ~1700 transactions a day (a
    # day of a few hundred rows is too noisy for a 0.1 Wasserstein threshold on the aggregates).
    root = clone_project(tmp_path / "clone", {})
    start, shift, n = 62, 63, 3  # a quiet day, the shift, a second day to catch it
    out = run([GLUE, "simulate", "--days", str(n), "--start-day", str(start), "--model", "fraud-detector",
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
    client = mlflow_client(root, staging / "mlflow.db")
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
        files = all_files(fetched)
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
                          env=env_for(clean) | {"GLUE_MLFLOW_TRACKING_URI": registry,
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

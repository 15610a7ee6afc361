"""The kill matrix: SIGKILL every stage of the loop at its worst moment, re-run, and check what survived.

Each fault is a real SIGKILL of a real `glue` process (tests/faults/sitecustomize.py wraps one
function of it; nothing in glue knows): during validation's writes, during Feast's write to the
online store, after a model version is registered and before its alias, before the evaluation's
rename, before and after the promotion's alias move, during batch scoring's write, and in an
Airflow training task whose retry runs after it. After each kill the same command is run again
(`dvc repro`, or the task's retry) and the test asserts what must hold:

- at most one registered version per completed training run: what a killed attempt registered is
  removed by the next one, and its MLflow run is marked KILLED;
- the champion moved only where the alias move itself happened, and its record completed after;
- no torn file: no partial parquet or JSON, no stray temporary file once the stage ran again;
- no partial online store: every entity of the last day has all its features online;
- `dvc status` clean at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SMALL_DEMO, clone_project

FAULTS = Path(__file__).resolve().parents[1] / "faults"
BIN = Path(sys.executable).parent
GLUE, DVC = str(BIN / "glue"), str(BIN / "dvc")
FRAUD, SPEND = "fraud-detector", "customer-spend"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]


def _env(root: Path, kill_at: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GLUE_", "AIRFLOW_CTX_")) and k != "PYTHONPATH"}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", GLUE_PROJECT_DIR=str(root),
               TQDM_DISABLE="1", PYTHONPATH=str(FAULTS), **extra)
    if kill_at:
        env["GLUE_KILL_AT"] = kill_at
    return env


def _run(args: list[str], root: Path, kill_at: str | None = None, **extra: str
         ) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=root, env=_env(root, kill_at, **extra), capture_output=True,
                          text=True, timeout=600)


def _ok(args: list[str], root: Path, **extra: str) -> str:
    proc = _run(args, root, **extra)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _killed(args: list[str], root: Path, kill_at: str, **extra: str) -> subprocess.CompletedProcess:
    """Run a command whose `glue` process is SIGKILLed at `kill_at`; check it was that kill."""
    proc = _run(args, root, kill_at, **extra)
    # Run directly, the process ends with -SIGKILL; under `dvc repro` DVC reports its stage's
    # exit code, which is -9 or, when the stage ran through a shell, 128 + 9 = 137.
    died = proc.returncode == -signal.SIGKILL or any(
        mark in proc.stderr for mark in ("exited with -9", "exited with 137", "SIGKILL"))
    assert proc.returncode != 0 and died, (
        f"{' '.join(args)} with GLUE_KILL_AT={kill_at} was not killed (exit {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def _strays(root: Path) -> list[str]:
    """Temporary files of interrupted atomic writes under data/ and metrics/."""
    return sorted(str(p.relative_to(root)) for folder in ("data", "metrics")
                  for p in (root / folder).rglob(".*.tmp"))


def _client(root: Path):  # noqa: ANN202
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / '.glue' / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def _versions(root: Path, model: str) -> list:
    return sorted(_client(root).search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version))


def _alias(root: Path, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(root).get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def _training_runs(root: Path, model: str) -> dict[str, list[str]]:
    """Run ids of the model's training experiment by status."""
    client = _client(root)
    experiment = client.get_experiment_by_name(f"{model}-training")
    by_status: dict[str, list[str]] = {}
    for run in client.search_runs([experiment.experiment_id]):
        by_status.setdefault(run.info.status, []).append(run.info.run_id)
    return by_status


def _small(root: Path) -> None:
    """Small fits: these tests are about what survives a kill, not model quality."""
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for spec in params["models"].values():
        spec["validation_days"] = 4
        spec["estimator"]["params"]["max_iter"] = 40
        spec["gate"]["floors"] = {}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam",
                    "small models"], cwd=root, check=True)


def _online_complete(root: Path) -> None:
    """Every entity with a feature row on the last day has every feature of its view online."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(root / "feature_repo"))
    for view in store.list_feature_views():
        source = Path(view.batch_source.path)
        table = pd.read_parquet(source if source.is_absolute() else root / "feature_repo" / source)
        ts = view.batch_source.timestamp_field
        last = table[table[ts] >= table[ts].max().floor("D")]
        keys = [column.name for column in view.entity_columns]
        rows = last[keys].drop_duplicates().to_dict("records")
        online = store.get_online_features([f"{view.name}:{f.name}" for f in view.features],
                                           rows).to_df()
        assert len(rows) > 10 and not online.isna().to_numpy().any(), (
            f"{view.name}: {int(online.isna().any(axis=1).sum())} of {len(rows)} entities lack "
            "features online")


def test_every_stage_killed_at_its_worst_moment_then_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    root = clone_project(tmp_path / "clone", SMALL_DEMO)
    # this process reads the clone's stores too (Feast's MLflow integration included): never the cwd's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / '.glue' / 'mlflow.db'}")
    _small(root)

    # 1. validation killed after writing a few accepted batches' files (before one's rename)
    _killed([DVC, "repro"], root, "validate-batches glue.atomic:_fsync after 5")
    validated = root / "data" / "validated"
    assert _strays(root), "the kill did not fall between a temporary file and its rename"
    for batch in (validated / "transactions").glob("*.parquet"):
        pd.read_parquet(batch)  # every visible file is whole
    for result in (validated / "results").glob("*.json"):
        json.loads(result.read_text())
    # the incremental path (the Airflow task's retry, no DVC): the dead writer's files are swept
    _ok([GLUE, "validate-batches"], root)
    assert _strays(root) == []
    assert len(list((validated / "transactions").glob("*.parquet"))) == SMALL_DEMO["days"]

    # 2. features killed during materialization: the first view's rows written, the rest not
    _killed([DVC, "repro"], root,
            "features feast.infra.online_stores.sqlite:SqliteOnlineStore.online_write_batch after 1")

    # 3. training killed after registering its version, before the alias (the first model DVC runs)
    _killed([DVC, "repro"], root, "train glue.adapters.mlflow:register_model after 1")
    _online_complete(root)  # the features stage ran again in full
    killed_model = next(m for m in (FRAUD, SPEND) if _versions(root, m))
    orphan = _versions(root, killed_model)
    assert len(orphan) == 1 and _alias(root, killed_model, "challenger") is None
    assert len(_training_runs(root, killed_model)["RUNNING"]) == 1

    # 4. evaluate killed with its verdict written, before the rename: no evaluation.json at all
    _killed([DVC, "repro"], root, "evaluate glue.atomic:_fsync after 1")
    for model in (FRAUD, SPEND):  # the retry removed the orphan: one version per completed run
        runs = _training_runs(root, model)
        assert len(_versions(root, model)) == len(runs.get("FINISHED", [])) == 1, (model, runs)
    assert [str(v.version) for v in _versions(root, killed_model)] != [str(orphan[0].version)]
    assert _training_runs(root, killed_model)["KILLED"] == [orphan[0].run_id]
    evaluated = [m for m in (FRAUD, SPEND) if (root / "metrics" / m / "evaluation.json").exists()]
    assert len(evaluated) <= 1 and _strays(root)
    for model in evaluated:
        json.loads((root / "metrics" / model / "evaluation.json").read_text())

    # 5. promote killed before the alias move: no champion, and none half-made
    _killed([DVC, "repro"], root, "promote glue.adapters.mlflow:set_alias before 1")
    assert [m for m in (FRAUD, SPEND) if _alias(root, m, "champion")] == []

    # 6. promote killed right after the alias move: the champion moved (the commit point), its
    # record (promoted_at) not yet written
    _killed([DVC, "repro"], root, "promote glue.adapters.mlflow:set_alias after 1")
    moved = [m for m in (FRAUD, SPEND) if _alias(root, m, "champion")]
    assert len(moved) == 1
    champion = _alias(root, moved[0], "champion")
    assert "glue.gate.promoted_at" not in _client(root).get_model_version(moved[0], champion).tags

    # 7. the same command once more, nothing killed: the loop completes and DVC is satisfied
    _ok([DVC, "repro"], root)
    status = _ok([DVC, "status", "--json"], root)  # `profile` is always_changed: it alone may show
    assert set(json.loads(status)) <= {"profile"}, status
    for model in (FRAUD, SPEND):
        versions = _versions(root, model)
        assert len(versions) == 1 and len(_training_runs(root, model)["FINISHED"]) == 1
        version = str(versions[0].version)
        assert _alias(root, model, "champion") == _alias(root, model, "challenger") == version
        tags = _client(root).get_model_version(model, version).tags
        assert tags["glue.gate.decision"] == "passed" and "glue.gate.promoted_at" in tags
        gate = json.loads((root / "metrics" / model / "gate.json").read_text())
        assert gate["champion_after"] == version
    assert _alias(root, moved[0], "champion") == champion  # moved once, by the alias move alone
    assert _strays(root) == []
    _online_complete(root)

    # 8. batch scoring killed after its first chunk: no scores file until a run completes
    scores = root / "data" / "scores" / FRAUD / "all.parquet"
    _killed([GLUE, "score-batch", "--model", FRAUD], root,
            "score-batch glue.batch_scoring:_ParquetParts.write after 1")
    assert not scores.exists() and _strays(root)
    out = _ok([GLUE, "score-batch", "--model", FRAUD], root)
    events = sum(len(pd.read_parquet(f)) for f in (validated / "transactions").glob("*.parquet"))
    assert len(pd.read_parquet(scores)) == events, out  # every validated event, once
    assert _strays(root) == []

    # 9. an Airflow training task killed after registering, then its retry (Airflow puts the task
    # instance in the task's environment): one version for the DAG run, the champion untouched
    task = {"AIRFLOW_CTX_DAG_ID": f"glue_training__{FRAUD}",
            "AIRFLOW_CTX_DAG_RUN_ID": "manual__2026-12-06T05:00:00+00:00", "AIRFLOW_CTX_TASK_ID": "train"}
    before = _alias(root, FRAUD, "champion")
    killed_runs = len(_training_runs(root, FRAUD).get("KILLED", []))
    _killed([GLUE, "train", "--model", FRAUD], root, "train glue.adapters.mlflow:register_model after 1",
            **task)
    out = _ok([GLUE, "train", "--model", FRAUD], root, **task)
    assert "removed version" in out and "killed earlier attempt" in out
    attempt = f"airflow:{task['AIRFLOW_CTX_DAG_ID']}/{task['AIRFLOW_CTX_DAG_RUN_ID']}/train"
    of_run = [v for v in _versions(root, FRAUD) if v.tags.get("glue.train_attempt") == attempt]
    assert len(of_run) == 1 and _alias(root, FRAUD, "challenger") == str(of_run[0].version)
    assert _alias(root, FRAUD, "champion") == before
    assert len(_training_runs(root, FRAUD)["KILLED"]) == killed_runs + 1

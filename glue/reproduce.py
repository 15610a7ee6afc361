"""`glue reproduce MODEL_URI`: rebuild a registered model from its lineage record and say whether
it comes out the same.

From the version's tags alone (glue/lineage.py wrote them at training time): the recorded commit is
checked out as a git worktree in a scratch folder, the recorded DVC data version is fetched from
its remote into that worktree's data/raw with DVC's CLI, and the commit's own code (run from the
worktree, not the installed glue) validates the batches, rebuilds the features and trains the
model on the embedded local profile, in stores of the scratch folder. Then the rebuilt model and
the registered one score the same fixed sample (the registered run's held-out validation rows) and
their metrics are compared.

The verdict is "identical" (every prediction equal), "within tolerance" (|difference| <=
TOLERANCE: floating-point noise, e.g. a different BLAS), or "different", with the reasons the
record gives (a dirty tree at training time, params that differ from the commit's) — or "not
reproducible" when the record lacks what it takes (no data version, no commit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import contract
from glue.errors import GlueError

if TYPE_CHECKING:
    from glue.settings import Settings

TOLERANCE = 1e-9  # largest |prediction difference| still called the same model
IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "different"
NOT_REPRODUCIBLE = "not reproducible"
_STAGES = (("validate-batches",), ("features",))  # then `train --model <name>`


@dataclass
class Reproduction:
    """What `glue reproduce` found."""

    model_uri: str
    verdict: str
    reasons: list[str] = field(default_factory=list)
    commit: str | None = None
    data_version: str | None = None
    sample_rows: int = 0
    max_abs_difference: float | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {recorded, reproduced}
    workdir: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict in (IDENTICAL, WITHIN)

    def summary(self) -> str:
        lines = [f"{self.model_uri}: {self.verdict}"]
        if self.commit:
            lines.append(f"  rebuilt from commit {self.commit[:12]} on data version {self.data_version}")
        if self.max_abs_difference is not None:
            lines.append(f"  predictions on {self.sample_rows} held-out rows: max |difference| "
                         f"{self.max_abs_difference:.3g} (tolerance {TOLERANCE:g})")
        differing = {k: v for k, v in self.metrics.items() if v["recorded"] != v["reproduced"]}
        lines.append(f"  metrics: {len(self.metrics) - len(differing)} of {len(self.metrics)} equal")
        lines += [f"    {k}: {v['recorded']!r} -> {v['reproduced']!r}" for k, v in differing.items()]
        lines += [f"  why: {reason}" for reason in self.reasons]
        if self.workdir:
            lines.append(f"  workspace kept in {self.workdir}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def reproduce(settings: Settings, model_uri: str, *, workdir: Path | None = None,
              keep: bool = False, remote: str | None = None) -> Reproduction:
    """Rebuild the version `model_uri` names from its record and compare it with the registered one.

    `remote` replaces the recorded DVC remote (the same data moved, or reached by another URL).
    """
    from glue.adapters import mlflow

    mlflow.configure(settings)
    ref = mlflow.resolve_model_uri(model_uri)
    tags = ref.tags
    commit, data = tags.get(contract.GIT_COMMIT, ""), tags.get(contract.DVC_DATA_VERSION, "")
    result = Reproduction(model_uri=model_uri, verdict=NOT_REPRODUCIBLE, commit=commit or None,
                          data_version=data or None)
    if not _is_hash(commit):
        result.reasons.append(f"no commit on record ({contract.GIT_COMMIT}: {commit or 'missing'})")
    if not data.endswith(".dir") and not _is_hash(data):
        result.reasons.append(f"no DVC data version on record ({contract.DVC_DATA_VERSION}: "
                              f"{data or 'missing'})")
    if result.reasons:
        return result
    if tags.get(contract.GIT_DIRTY) == "true":
        result.reasons.append(f"the git tree was dirty at training time: the code or params then were not "
                              f"commit {commit[:12]}'s")

    scratch = workdir or Path(tempfile.mkdtemp(prefix="glue-reproduce-"))
    tree = scratch / "src"
    try:
        _git(settings.project_dir, "worktree", "add", "--detach", "--force", str(tree), commit)
    except GlueError as exc:
        result.reasons.append(f"commit {commit[:12]} cannot be checked out here: {exc}")
        return result
    try:
        remote = remote or tags.get(contract.DVC_REMOTE, "")
        remote_url = remote if "://" in remote else str((settings.project_dir / remote).resolve())
        from glue.adapters import dvc

        try:
            dvc.fetch(data, remote_url, tree / "data" / "raw")
        except GlueError as exc:
            result.verdict = NOT_REPRODUCIBLE
            result.reasons.append(f"data version {data} is not retrievable from {remote}: {exc}")
            return result
        _rebuild(tree, ref.name, tags.get(contract.TRAIN_THREADS, "unknown"))
        _compare(settings, ref, tree, result)
    finally:
        if keep:
            result.workdir = str(scratch)
        else:
            _git(settings.project_dir, "worktree", "remove", "--force", str(tree), check=False)
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def _rebuild(tree: Path, model: str, threads: str) -> None:
    """The commit's own stages, run by the commit's own code, on the local profile in `tree`, with
    the recorded number of OpenMP threads (a fit's floating-point sums follow the thread split)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE_", "MLFLOW_", "FEAST_"))}
    env |= {"GLUE_PROJECT_DIR": str(tree), "GLUE_PROFILE": "local", "PYTHONPATH": str(tree),
            "TQDM_DISABLE": "1"}
    if threads.isdigit():
        env["OMP_NUM_THREADS"] = threads
    for args in (*_STAGES, ("train", "--model", model)):
        proc = subprocess.run([sys.executable, "-m", "glue.cli", *args], cwd=tree, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GlueError(f"reproduce: `glue {' '.join(args)}` at the recorded commit failed "
                            f"(exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")


def _compare(settings: Settings, ref: Any, tree: Path, result: Reproduction) -> None:
    """Both models on the registered run's held-out rows; the run metrics side by side."""
    import numpy as np
    import pandas as pd

    from glue import training
    from glue.adapters import mlflow

    tags = ref.tags
    run_id = tags.get(contract.TRAIN_RUN_ID) or ref.run_id
    sample_path = mlflow.cached_artifact(settings, run_id, contract.VALIDATION_ARTIFACT)
    if sample_path is None:
        raise GlueError(f"run {run_id} has no {contract.VALIDATION_ARTIFACT}: no fixed sample to compare on")
    sample = pd.read_parquet(sample_path)
    columns = contract.feature_columns(tags)
    task = tags.get(contract.TASK, training.BINARY)
    X = sample[columns].astype("float64")
    registered = training.predict(mlflow.load_sklearn_model(ref.uri), task, X)
    _, _, recorded = mlflow.run_data(run_id)

    rebuilt_db = f"sqlite:///{tree / '.glue' / 'mlflow.db'}"
    rebuilt = mlflow.alias_in(rebuilt_db, ref.name, contract.CHALLENGER)
    reproduced = mlflow.run_metrics_in(rebuilt_db, rebuilt.run_id)
    again = training.predict(mlflow.load_sklearn_model_from(rebuilt_db, rebuilt.uri), task, X)

    diff = float(np.max(np.abs(again - registered))) if len(X) else 0.0
    result.sample_rows, result.max_abs_difference = len(X), diff
    keys = sorted(k for k in recorded if k in reproduced and not _is_timing(k)
                  and not k.startswith(mlflow.EVALUATE_PREFIX))  # evaluate_*: the same numbers again
    result.metrics = {k: {"recorded": recorded[k], "reproduced": reproduced[k]} for k in keys}
    recorded_params = json.loads(tags.get(contract.TRAIN_PARAMS, "{}"))
    rebuilt_params = json.loads(rebuilt.tags.get(contract.TRAIN_PARAMS, "{}"))
    if recorded_params != rebuilt_params:
        result.reasons.append("the commit's params.yaml gives other training params than the recorded ones: "
                              f"{recorded_params} vs {rebuilt_params}")
    if tags.get(contract.TRAIN_THREADS, "unknown") == "unknown":
        result.reasons.append("the record does not say how many OpenMP threads the fit used; a different "
                              "count changes the floating-point sums")
    if rebuilt.tags.get(contract.DVC_DATA_VERSION) != tags.get(contract.DVC_DATA_VERSION):
        result.reasons.append("the rebuilt model read another data version "
                              f"({rebuilt.tags.get(contract.DVC_DATA_VERSION)})")
    same_metrics = all(v["recorded"] == v["reproduced"] for v in result.metrics.values())
    if diff == 0.0 and same_metrics:
        result.verdict = IDENTICAL
    elif diff <= TOLERANCE:
        result.verdict = WITHIN
    else:
        result.verdict = DIFFERENT
        if not result.reasons:
            result.reasons.append("same commit, params and data, yet other predictions: the estimator or "
                                  "the environment is not deterministic (threads, library versions)")


def _is_timing(metric: str) -> bool:
    """Durations on the run (glue's fit_seconds, Feast's job timings): not the model's."""
    return metric == "fit_seconds" or metric.startswith("feast.") or metric.endswith(("_sec", "_seconds"))


def _is_hash(value: str) -> bool:
    return len(value) >= 32 and all(c in "0123456789abcdef" for c in value.removesuffix(".dir"))


def _git(cwd: Path, *args: str, check: bool = True) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise GlueError((proc.stderr or proc.stdout).strip() or f"git {' '.join(args)} failed")

"""`glue run`: the whole loop once, as `dvc repro` defines it, then the data pushed to the remote.

The pipeline's order and caching belong to DVC (dvc.yaml); this module only starts it, pushes the
versioned data to the profile's DVC remote and gathers the metrics files the stages wrote, so the
CLI can print one summary.

Profiles and DVC: the stages that write to stores (Feast's registry and online store, MLflow's
registry) depend on ``.glue/profile.json``, written by the always-run ``profile`` stage from
:func:`profile_record`: which stores the active profile means, no secrets. Switching profile changes
that file, so `dvc repro` re-runs those stages against the new stores. DVC still cannot see inside
the stores, so `glue run` then asks them (:func:`missing_in_stores`) whether they hold what the
pipeline's records say, re-runs from the first stage whose work is missing, and fails rather than
report a champion or features the active stores do not have.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glue import atomic
from glue.adapters import dvc
from glue.contract import CHAMPION
from glue.errors import GlueError
from glue.settings import Settings, feast_prod_env

PROFILE_RECORD = Path(".glue/profile.json")  # under the project: the `profile` stage's output
# The stages that write to the profile's stores, in pipeline order (each depends on PROFILE_RECORD).
STORE_STAGES = ("features", "train", "evaluate", "promote")

METRICS_DIR = "metrics"
# What the summary shows of each metrics file (all its numbers for a file not listed here).
_SHOWN = {
    "validation": ("batches_accepted", "batches_rejected", "rows_accepted"),
    "train": ("average_precision", "roc_auc", "precision_at_threshold", "recall_at_threshold",
              "rmse", "mae", "r2", "train_rows", "validation_rows"),
    "evaluation": ("window_start", "window_end", "rows", "positives"),
    "gate": ("promoted", "challenger_version", "champion_after", "reason"),
}


@dataclass(frozen=True)
class RunResult:
    """What one pass of the loop produced: wall time and each stage's metrics file."""

    seconds: float
    data_version: str | None
    metrics: dict[str, dict] = field(default_factory=dict)
    tracking_uri: str = ""
    # each model's champion as the active profile's registry holds it after the run (None: none)
    champions: dict[str, str | None] = field(default_factory=dict)
    registry: str = ""
    rerun_from: str | None = None  # the stage re-run because the stores lacked its work

    def summary(self) -> str:
        lines = [f"loop finished in {self.seconds:.1f} s; raw data version {self.data_version}"]
        if self.rerun_from:
            lines.append(f"  the stores lacked earlier work: re-ran from stage {self.rerun_from}")
        for name, values in sorted(self.metrics.items()):
            keys = _SHOWN.get(name.rsplit("/", 1)[-1]) or [k for k, v in values.items()
                                                            if not isinstance(v, dict | list)]
            shown = ", ".join(f"{k}={_fmt(values[k])}" for k in keys if k in values)
            if shown:
                lines.append(f"  {name}: {shown}")
        ui = f", `mlflow ui --backend-store-uri {self.tracking_uri}`" if self.tracking_uri else ""
        for name, version in self.champions.items():
            held = f"{name} version {version}" if version else f"{name}: none"
            lines.append(f"  champion in {self.registry}: {held}")
        lines.append(f"next: `dvc metrics show`, `dvc plots show`{ui}")
        return "\n".join(lines)


def run_loop(settings: Settings, *, force: bool = False, push: bool = True) -> RunResult:
    """Reproduce every stage that is out of date, make sure the active stores hold what the stages
    recorded (re-running from the first that they do not), then push the data to the DVC remote."""
    start = time.perf_counter()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    dvc.reproduce(settings.project_dir, force=force)
    missing = missing_in_stores(settings)
    first = None
    if missing:
        first = min(missing, key=STORE_STAGES.index)
        dvc.reproduce(settings.project_dir, first, force=True, downstream=True)
        still = missing_in_stores(settings)
        if still:
            raise GlueError(f"after re-running from stage '{first}', the {settings.profile} profile's stores "
                            f"still lack: {_listed(still)}")
    if push:
        remote = dvc.ensure_remote(settings.project_dir, settings.profile, settings.dvc_remote)
        dvc.push(settings.project_dir, remote)
    return RunResult(
        seconds=time.perf_counter() - start,
        data_version=dvc.data_version(settings.project_dir),
        metrics=_read_metrics(settings.project_dir / METRICS_DIR),
        tracking_uri=settings.mlflow_tracking_uri if settings.profile == "local" else "",
        champions=_champions(settings),
        registry=_portable(settings.mlflow_registry_uri, settings.project_dir),
        rerun_from=first,
    )


def profile_record(settings: Settings) -> dict[str, Any]:
    """Which stores the active profile writes to, as DVC should see them: no secrets, and paths
    inside the project relative to it (so the same profile gives the same record on every machine)."""
    feast = yaml.safe_load(_expand(Path(settings.feast_yaml).read_text())) or {}
    return {
        "profile": settings.profile,
        "mlflow_tracking_uri": _portable(settings.mlflow_tracking_uri, settings.project_dir),
        "mlflow_registry_uri": _portable(settings.mlflow_registry_uri, settings.project_dir),
        "feast_yaml": _portable(str(settings.feast_yaml), settings.project_dir),
        "feast_project": feast.get("project"),
        "feast_registry": _public(feast.get("registry"), settings.project_dir),
        "feast_offline_store": _public(feast.get("offline_store"), settings.project_dir),
        "feast_online_store": _public(feast.get("online_store"), settings.project_dir),
    }


def write_profile_record(settings: Settings, path: Path | None = None) -> Path:
    """Write :func:`profile_record` for the `profile` stage of dvc.yaml (same profile, same bytes)."""
    path = path or settings.project_dir / PROFILE_RECORD
    atomic.write_json(path, profile_record(settings), indent=2, sort_keys=True)
    return path


def missing_in_stores(settings: Settings) -> dict[str, str]:
    """Stage -> what the active profile's stores lack of the work that stage's records claim.

    Checks what DVC cannot see: that the Feast registry holds every model's feature service with
    its online views materialized, that the MLflow registry holds the version each
    data/model/<model>.json names (from the same run), and the champion that
    metrics/<model>/gate.json says was promoted.
    """
    from glue import promotion, training
    from glue.adapters import feast, mlflow

    missing: dict[str, str] = {}
    records = {m.name: settings.data_dir / training.model_record(m.name) for m in settings.models}
    if not any(path.is_file() for path in records.values()):
        return missing  # the pipeline has not trained yet: nothing is claimed
    store = feast.open_store(settings)
    lacking = sorted({what for m in settings.models
                      for what in feast.missing_online(store, m.feature_service)})
    if lacking:
        missing["features"] = f"Feast ({settings.feast_yaml.name}): {', '.join(lacking)}"
    mlflow.configure(settings)
    for model in settings.models:
        if not records[model.name].is_file():
            continue
        record = json.loads(records[model.name].read_text())
        name, version = record["registered_model"], str(record["version"])
        held = mlflow.find_version(name, version)
        if held is None or held.run_id != record["run_id"]:
            missing.setdefault("train", f"MLflow registry {settings.mlflow_registry_uri}: {name} version "
                                        f"{version} of run {record['run_id']}")
            continue
        gate_record = settings.project_dir / promotion.gate_file(model.name)
        if gate_record.is_file():
            gate = json.loads(gate_record.read_text())
            if gate.get("promoted") and gate.get("challenger_version") == version and \
                    mlflow.get_alias(name, CHAMPION) is None:
                missing.setdefault("promote", f"MLflow registry {settings.mlflow_registry_uri}: alias "
                                              f"champion of {name}")
    return missing


def _champions(settings: Settings) -> dict[str, str | None]:
    from glue.adapters import mlflow

    mlflow.configure(settings)
    out = {}
    for model in settings.models:
        ref = mlflow.get_alias(model.name, CHAMPION)
        out[model.name] = ref.version if ref else None
    return out


def _listed(missing: dict[str, str]) -> str:
    return "; ".join(f"{stage}: {what}" for stage, what in missing.items())


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _expand(text: str) -> str:
    """${VAR} as Feast substitutes it, with glue's defaults for the FEAST_* variables not set."""
    values = {**feast_prod_env(), **os.environ}
    return _VAR.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def _portable(value: str, project_dir: Path) -> str:
    """A URI or path with the project directory replaced by `.` and any password removed."""
    value = re.sub(r"(://[^:/@]+):[^@/]*@", r"\1@", value)  # user:password@ -> user@
    root = str(project_dir.resolve())
    return value.replace(root + os.sep, "./").replace(root, ".")


def _public(value: Any, project_dir: Path) -> Any:
    """A Feast config section without its secrets, paths made portable."""
    if isinstance(value, dict):
        return {k: _public(v, project_dir) for k, v in sorted(value.items()) if "password" not in k.lower()}
    if isinstance(value, str):
        return _portable(value, project_dir)
    return value


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _read_metrics(metrics_dir: Path) -> dict[str, dict]:
    """metrics/*.json (project-wide) and metrics/<model>/*.json, named `stage` and `model/stage`."""
    if not metrics_dir.is_dir():
        return {}
    found = {p.stem: json.loads(p.read_text()) for p in sorted(metrics_dir.glob("*.json"))}
    found.update({f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
                  for p in sorted(metrics_dir.glob("*/*.json"))})
    return found

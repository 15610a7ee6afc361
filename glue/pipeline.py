"""`glue run`: the whole loop once, as `dvc repro` defines it, then the data pushed to the remote.

The pipeline's order and caching belong to DVC (dvc.yaml); this module only starts it, pushes the
versioned data to the profile's DVC remote and gathers the metrics files the stages wrote, so the
CLI can print one summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from glue import versioning
from glue.settings import Settings

METRICS_DIR = "metrics"
# What the summary shows of each metrics file (all its numbers for a file not listed here).
_SHOWN = {
    "validation": ("batches_accepted", "batches_rejected", "rows_accepted"),
    "train": ("average_precision", "roc_auc", "precision_at_threshold", "recall_at_threshold",
              "train_rows", "validation_rows"),
    "evaluation": ("window_start", "window_end", "rows", "fraud"),
    "gate": ("promoted", "challenger_version", "champion_after", "reason"),
}


@dataclass(frozen=True)
class RunResult:
    """What one pass of the loop produced: wall time and each stage's metrics file."""

    seconds: float
    data_version: str | None
    metrics: dict[str, dict] = field(default_factory=dict)
    tracking_uri: str = ""

    def summary(self) -> str:
        lines = [f"loop finished in {self.seconds:.1f} s; raw data version {self.data_version}"]
        for name, values in sorted(self.metrics.items()):
            keys = _SHOWN.get(name) or [k for k, v in values.items() if not isinstance(v, dict | list)]
            shown = ", ".join(f"{k}={_fmt(values[k])}" for k in keys if k in values)
            if shown:
                lines.append(f"  {name}: {shown}")
        ui = f", `mlflow ui --backend-store-uri {self.tracking_uri}`" if self.tracking_uri else ""
        lines.append(f"next: `dvc metrics show`, `dvc plots show`{ui}")
        return "\n".join(lines)


def run_loop(settings: Settings, *, force: bool = False, push: bool = True) -> RunResult:
    """Reproduce every stage that is out of date, then push the data to the DVC remote."""
    start = time.perf_counter()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    versioning.reproduce(settings.project_dir, force=force)
    if push:
        remote = versioning.ensure_remote(settings.project_dir, settings.profile, settings.dvc_remote)
        versioning.push(settings.project_dir, remote)
    return RunResult(
        seconds=time.perf_counter() - start,
        data_version=versioning.data_version(settings.project_dir),
        metrics=_read_metrics(settings.project_dir / METRICS_DIR),
        tracking_uri=settings.mlflow_tracking_uri if settings.profile == "local" else "",
    )


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _read_metrics(metrics_dir: Path) -> dict[str, dict]:
    if not metrics_dir.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(metrics_dir.glob("*.json"))}

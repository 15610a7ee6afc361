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


@dataclass(frozen=True)
class RunResult:
    """What one pass of the loop produced: wall time and each stage's metrics file."""

    seconds: float
    data_version: str | None
    metrics: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"loop finished in {self.seconds:.1f} s; raw data version {self.data_version}"]
        for name, values in sorted(self.metrics.items()):
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if not isinstance(v, dict))
            lines.append(f"  {name}: {shown}")
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
    )


def _read_metrics(metrics_dir: Path) -> dict[str, dict]:
    if not metrics_dir.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(metrics_dir.glob("*.json"))}

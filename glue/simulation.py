"""`glue simulate`: live through N days of the demo, one day at a time, through the real DAGs.

Why: the closed loop (drift detected → retrain → gated promotion) only shows itself over time.
This module replays time: it generates the demo data with a shift on a chosen day, then releases
one more daily batch per simulated day into a staging raw directory (the simulation's
``raw_dir``), runs ``airflow dags test glue_monitoring <day>`` and, when that day's check decided
to retrain, ``airflow dags test glue_training <day>``.

`airflow dags test` runs one DAG run without a scheduler, so the ``glue://retrain-request``
asset event that glue_monitoring emits is recorded in Airflow but does not start glue_training by
itself; the simulation starts it, exactly where the scheduler would (with `glue airflow ui`
running, the asset triggers it for real).

The simulation keeps its own raw, validated and quarantine folders under
``<state_dir>/simulation``; MLflow (the champion) and the feature store are the project's.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue.errors import GlueError

if TYPE_CHECKING:
    from glue.settings import Settings

MONITORING_DAG = "glue_monitoring"
TRAINING_DAG = "glue_training"


@dataclass(frozen=True)
class DayResult:
    """What happened on one simulated day."""

    index: int  # 0-based day of the demo data
    day: str  # YYYY-MM-DD
    retrain: bool
    decision: str  # the monitoring check's summary
    trained_version: str | None = None
    promoted: bool | None = None
    champion: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class SimulationResult:
    """The day-by-day record of one simulation."""

    shift_day: int | None
    shift_kind: str
    start_day: int
    days: list[DayResult] = field(default_factory=list)
    staging_dir: Path | None = None

    @property
    def retrain_days(self) -> list[str]:
        return [d.day for d in self.days if d.retrain]

    def summary(self) -> str:
        shift = f"{self.shift_kind} from day {self.shift_day}" if self.shift_day is not None else "no shift"
        lines = [f"simulated {len(self.days)} days from day {self.start_day} ({shift}); "
                 f"retrained on {len(self.retrain_days)} day(s)",
                 f"{'day':>4}  {'date':10}  {'retrain':7}  {'promoted':8}  champion"]
        for d in self.days:
            promoted = "-" if d.promoted is None else ("yes" if d.promoted else "no")
            lines.append(f"{d.index:>4}  {d.day:10}  {'yes' if d.retrain else 'no':7}  {promoted:8}  "
                         f"{d.champion or '-'}")
            lines += [f"        {line}" for line in d.decision.splitlines()[:3]]
        return "\n".join(lines)


def simulate(
    settings: Settings,
    *,
    days: int,
    shift_day: int | None,
    shift_kind: str = "new_fraud_pattern",
    start_day: int | None = None,
) -> SimulationResult:
    """Run monitoring (and retraining when it says so) for ``days`` consecutive demo days."""
    import time

    from glue import demo_data, orchestration

    demo = settings.params.demo
    first = default_start_day(settings, days, shift_day) if start_day is None else start_day
    if days < 1 or first < 1:
        raise GlueError(f"glue simulate: --days ({days}) and --start-day ({first}) must both be >= 1")
    if shift_day is not None and shift_day < 0:
        raise GlueError(f"glue simulate: --shift-day must be >= 0, got {shift_day}")
    kind = shift_kind if shift_day is not None else "none"
    params = demo.model_copy(update={"days": max(demo.days, first + days), "shift_day": shift_day,
                                     "shift_kind": kind})
    demo_data.generate(params, settings.raw_dir)

    staging = settings.state_dir / "simulation"
    sim = stage_settings(settings, staging)
    dates = [dt.date.fromisoformat(params.start_date) + dt.timedelta(days=i) for i in range(first + days)]
    for i in range(first):  # the history, visible from the start
        release_day(settings.raw_dir, sim.raw_dir, dates[i])

    rows: list[DayResult] = []
    for index in range(first, first + days):
        t0 = time.perf_counter()
        day = dates[index]
        release_day(settings.raw_dir, sim.raw_dir, day)
        monitored = orchestration.test_dag(sim, MONITORING_DAG, day)
        check: dict[str, Any] = orchestration.xcom_return(sim, MONITORING_DAG, monitored.run_id,
                                                          "check") or {}
        retrain = monitored.task_states.get("request_retrain") == "success"
        row = DayResult(index=index, day=day.isoformat(), retrain=retrain,
                        decision=str(check.get("summary", "")))
        if retrain:
            trained = orchestration.test_dag(sim, TRAINING_DAG, day)
            gate = orchestration.xcom_return(sim, TRAINING_DAG, trained.run_id, "promote") or {}
            row = DayResult(index=row.index, day=row.day, retrain=True, decision=row.decision,
                            trained_version=gate.get("challenger_version"),
                            promoted=gate.get("promoted"), champion=gate.get("champion_after"))
        rows.append(DayResult(**{**row.__dict__, "seconds": time.perf_counter() - t0}))
    return SimulationResult(shift_day=shift_day, shift_kind=kind, start_day=first, days=rows,
                            staging_dir=staging)


def default_start_day(settings: Settings, days: int, shift_day: int | None) -> int:
    """Centre the simulated days on the shift, after enough history to train and validate on."""
    demo, train = settings.params.demo, settings.params.train
    history = demo.label_delay_days + 2 * train.validation_days
    if shift_day is None:
        return max(history, demo.days - days)
    return max(history, shift_day - days // 2)


def stage_settings(settings: Settings, staging: Path) -> Settings:
    """The settings of the simulation: its own raw/validated/quarantine folders, emptied."""
    if staging.exists():
        shutil.rmtree(staging)
    for name in ("raw/transactions", "raw/labels", "validated", "quarantine"):
        (staging / name).mkdir(parents=True)
    return settings.model_copy(update={
        "raw_dir": staging / "raw",
        "validated_dir": staging / "validated",
        "quarantine_dir": staging / "quarantine",
    })


def release_day(source: Path, target: Path, day: dt.date) -> None:
    """Make one day's batch (and its delayed labels) visible, as the day's delivery would."""
    name = f"{day.isoformat()}.parquet"
    for kind in ("transactions", "labels"):
        src = source / kind / name
        if not src.is_file():
            raise GlueError(f"{src}: missing demo batch for {day} (regenerate with `glue demo-data`)")
        shutil.copy2(src, target / kind / name)

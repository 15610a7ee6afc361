"""`glue simulate`: live through N days of the demo, one day at a time, through the real DAGs.

Why: the closed loop (drift detected → retrain → gated promotion) only shows itself over time.
This module replays time: it generates the demo data with a shift on a chosen day into a source
folder, then delivers one more daily batch per simulated day into the simulation's raw folder
(the day's transactions, and the labels that became known that day: those of ``label_delay_days``
earlier), runs ``airflow dags test glue_monitoring <day>`` and, when that day's check decided to
retrain, ``airflow dags test glue_training <day>``. Before the first simulated day it trains the
first champion on the history, through ``glue_training`` too.

`airflow dags test` runs one DAG run without a scheduler, so the ``glue://retrain-request``
asset event that glue_monitoring emits is recorded in Airflow but does not start glue_training by
itself; the simulation starts it, exactly where the scheduler would (with `glue airflow ui`
running, the asset triggers it for real).

Everything the simulation writes is under ``<state_dir>/simulation`` (emptied at each start): raw,
validated, quarantine, feature snapshots, monitoring reports and, on the ``local`` profile, its own
MLflow store and Feast registry and online store, so the project's champion and features are
never touched. Airflow's metadata DB is the project's: the Airflow UI shows the simulated runs.
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
# The longest rolling window of the demo's features (feature_repo: 30-day aggregates). A model
# trained on days whose windows are still filling up sees other distributions than later days.
FEATURE_WARMUP_DAYS = 30


@dataclass(frozen=True)
class DayResult:
    """What happened on one simulated day."""

    index: int  # 0-based day of the demo data
    day: str  # YYYY-MM-DD
    retrain: bool
    decision: str  # the monitoring check's summary
    drift: bool = False
    decay: bool = False
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
    bootstrap_champion: str | None = None
    mlflow_tracking_uri: str = ""

    @property
    def retrain_days(self) -> list[str]:
        return [d.day for d in self.days if d.retrain]

    def summary(self) -> str:
        shift = f"{self.shift_kind} from day {self.shift_day}" if self.shift_day is not None else "no shift"
        lines = [f"simulated {len(self.days)} days from day {self.start_day} ({shift}); first champion "
                 f"v{self.bootstrap_champion}; retrained on {len(self.retrain_days)} day(s)",
                 f"{'day':>4}  {'date':10}  drift  decay  retrain  promoted  champion"]
        yes = {True: "yes", False: "no"}
        for d in self.days:
            promoted = "-" if d.promoted is None else yes[d.promoted]
            lines.append(f"{d.index:>4}  {d.day:10}  {yes[d.drift]:5}  {yes[d.decay]:5}  {yes[d.retrain]:7}  "
                         f"{promoted:8}  {d.champion or '-'}")
        lines.append(f"reports: {self.staging_dir}/monitoring/<day>/ (Evidently HTML, decision.json)")
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri {self.mlflow_tracking_uri}")
        return "\n".join(lines)


def simulate(
    settings: Settings,
    *,
    days: int,
    shift_day: int | None,
    shift_kind: str = "spending_change",
    start_day: int | None = None,
) -> SimulationResult:
    """Train a first champion on the history, then monitor (and retrain) for `days` demo days."""
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
    staging = settings.state_dir / "simulation"
    sim = stage_settings(settings, staging)
    demo_data.generate(params, staging / "source")

    dates = [dt.date.fromisoformat(params.start_date) + dt.timedelta(days=i) for i in range(first + days)]
    for i in range(first):  # the history, as delivered day by day until the day before the first
        deliver_day(staging / "source", sim.raw_dir, dates, i, demo.label_delay_days)
    bootstrap = orchestration.test_dag(sim, TRAINING_DAG, dates[first - 1])
    gate = orchestration.xcom_return(sim, TRAINING_DAG, bootstrap.run_id, "promote") or {}
    first_champion = gate.get("champion_after")
    if not first_champion:
        raise GlueError(f"glue simulate: the first model did not become champion: {gate.get('summary')}")

    rows: list[DayResult] = []
    for index in range(first, first + days):
        t0 = time.perf_counter()
        day = dates[index]
        deliver_day(staging / "source", sim.raw_dir, dates, index, demo.label_delay_days)
        monitored = orchestration.test_dag(sim, MONITORING_DAG, day)
        check: dict[str, Any] = orchestration.xcom_return(sim, MONITORING_DAG, monitored.run_id,
                                                          "check") or {}
        retrain = monitored.task_states.get("request_retrain") == "success"
        fields: dict[str, Any] = {"index": index, "day": day.isoformat(), "retrain": retrain,
                                  "decision": str(check.get("summary", "")),
                                  "drift": bool(check.get("drift")), "decay": bool(check.get("decay"))}
        if retrain:
            trained = orchestration.test_dag(sim, TRAINING_DAG, day)
            gate = orchestration.xcom_return(sim, TRAINING_DAG, trained.run_id, "promote") or {}
            fields |= {"trained_version": gate.get("challenger_version"), "promoted": gate.get("promoted"),
                       "champion": gate.get("champion_after")}
        rows.append(DayResult(**fields, seconds=time.perf_counter() - t0))
    return SimulationResult(shift_day=shift_day, shift_kind=kind, start_day=first, days=rows,
                            staging_dir=staging, bootstrap_champion=first_champion,
                            mlflow_tracking_uri=sim.mlflow_tracking_uri)


def default_start_day(settings: Settings, days: int, shift_day: int | None) -> int:
    """The first simulated day: late enough that the first champion's reference window is mature.

    The first champion trains on the labelled history (labels arrive `label_delay_days` late),
    holds out `validation_days`, and drift compares against its last `reference_days` of training:
    those must lie after the features' warm-up. Then the days are centred on the shift if possible.
    """
    demo, train = settings.params.demo, settings.params.train
    reference = settings.params.monitoring.reference_days or FEATURE_WARMUP_DAYS
    history = FEATURE_WARMUP_DAYS + reference + demo.label_delay_days + train.validation_days
    if shift_day is None:
        return history
    return max(history, shift_day - days // 2)


def stage_settings(settings: Settings, staging: Path) -> Settings:
    """The settings of the simulation: its own folders (emptied) and, locally, its own MLflow."""
    if staging.exists():
        shutil.rmtree(staging)
    for name in ("source", "raw/transactions", "raw/labels", "validated", "quarantine", "features",
                 "monitoring"):
        (staging / name).mkdir(parents=True)
    update: dict[str, Any] = {
        "raw_dir": staging / "raw",
        "validated_dir": staging / "validated",
        "quarantine_dir": staging / "quarantine",
        "features_dir": staging / "features",
        "monitoring_dir": staging / "monitoring",
        "outputs_dir": staging,
    }
    if settings.profile == "local":
        db = f"sqlite:///{staging / 'mlflow.db'}"
        update |= {"mlflow_tracking_uri": db, "mlflow_registry_uri": db,
                   "mlflow_artifacts_dir": staging / "mlartifacts",
                   "feast_yaml": own_feast_yaml(settings.feast_yaml, staging)}
    return settings.model_copy(update=update)


def own_feast_yaml(project_yaml: Path, staging: Path) -> Path:
    """The project's feature_store.yaml with the registry and online store moved under staging.

    The simulated days must not overwrite the project's Feast registry (whose sources would then
    point at the simulation's snapshots) nor its online store.
    """
    import yaml

    config = yaml.safe_load(Path(project_yaml).read_text())
    feast_dir = staging / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(config.get("registry"), dict):
        config["registry"]["path"] = str(feast_dir / "registry.db")
    else:
        config["registry"] = str(feast_dir / "registry.db")
    config.setdefault("online_store", {"type": "sqlite"})["path"] = str(feast_dir / "online_store.db")
    target = staging / "feature_store.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def deliver_day(source: Path, target: Path, dates: list[dt.date], index: int, label_delay_days: int) -> None:
    """What arrives on day `index`: its transactions, and the labels of `label_delay_days` before."""
    _copy(source / "transactions", target / "transactions", dates[index])
    if index - label_delay_days >= 0:
        _copy(source / "labels", target / "labels", dates[index - label_delay_days])


def _copy(source: Path, target: Path, day: dt.date) -> None:
    src = source / f"{day.isoformat()}.parquet"
    if not src.is_file():
        raise GlueError(f"{src}: missing demo batch for {day}")
    shutil.copy2(src, target / src.name)

"""`glue simulate`: live through N days of the project's data, one day at a time, through the real DAGs.

Why: the closed loop (drift detected → retrain → gated promotion) only shows itself over time.
This module replays time for every model of the project (or one): the project's own data generator
(params.yaml ``data.generator``, called as ``generate(demo, raw_dir)`` with the ``demo:`` section
and the caller's overrides) writes the whole period into a source folder; then each simulated day
delivers what had arrived by its end into the simulation's raw folder, and runs, as the scheduler
would: ``glue_features`` for the day, each model's ``glue_monitoring__<model>``, and, for a model
whose check decided to retrain, ``glue_training__<model>``. Before the first simulated day each
model's first champion is trained on the history, through its training DAG too.

What "arrived" means needs no configuration: a row of a generated file exists once the latest of
its timestamps has passed. An event row arrives at its event time; a label row carries the time
its label became known, so labels arrive late by exactly as much as the generator made them. A
file whose rows have all arrived is copied as is; one still arriving holds the rows arrived so far.

`airflow dags test` runs one DAG run without a scheduler, so the asset events the DAGs emit
(``glue://features``, ``glue://<model>/retrain-request``) are recorded in Airflow but start
nothing by themselves; the simulation starts the consumers itself, exactly where the scheduler
would (with `glue airflow ui` running, the assets trigger them for real).

Everything the simulation writes is under ``<state_dir>/simulation`` (emptied at each start): raw,
validated, quarantine, feature tables, monitoring reports and, on the ``local`` profile, its own
MLflow store and Feast registry and online store, so the project's champions and features are
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
    import numpy as np

    from glue.settings import ModelSpec, Settings

# How long rolling features take to fill up, by default (`--warmup-days`): a model trained on days
# whose windows are still filling sees other distributions than later days.
FEATURE_WARMUP_DAYS = 30
SOURCE_DIR = "source"  # under the staging folder: everything the generator wrote


@dataclass(frozen=True)
class DayResult:
    """What happened to one model on one simulated day."""

    index: int  # 0-based day of the generated data
    day: str  # YYYY-MM-DD
    model: str
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
    """The day-by-day record of one simulation, one row per model and day."""

    start_day: int
    models: list[str]
    days: list[DayResult] = field(default_factory=list)
    staging_dir: Path | None = None
    bootstrap_champions: dict[str, str] = field(default_factory=dict)
    mlflow_tracking_uri: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def retrain_days(self, model: str | None = None) -> list[str]:
        return [d.day for d in self.days if d.retrain and model in (None, d.model)]

    def summary(self) -> str:
        simulated = len({d.day for d in self.days})
        given = ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "none"
        lines = [f"simulated {simulated} days from day {self.start_day} (generator overrides: {given})"]
        for name in self.models:
            lines.append(f"{name}: first champion v{self.bootstrap_champions.get(name)}; retrained on "
                         f"{len(self.retrain_days(name))} day(s)")
        width = max([len(m) for m in self.models] + [5])
        lines.append(f"{'day':>4}  {'date':10}  {'model':{width}}  drift  decay  retrain  promoted  champion")
        yes = {True: "yes", False: "no"}
        for d in self.days:
            promoted = "-" if d.promoted is None else yes[d.promoted]
            lines.append(f"{d.index:>4}  {d.day:10}  {d.model:{width}}  {yes[d.drift]:5}  {yes[d.decay]:5}  "
                         f"{yes[d.retrain]:7}  {promoted:8}  {d.champion or '-'}")
        lines.append(f"reports: {self.staging_dir}/monitoring/<model>/<day>/ (Evidently HTML, decision.json)")
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri {self.mlflow_tracking_uri}")
        return "\n".join(lines)


def simulate(
    settings: Settings,
    *,
    days: int,
    start_day: int | None = None,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
    warmup_days: int = FEATURE_WARMUP_DAYS,
) -> SimulationResult:
    """Train each model's first champion on the history, then monitor (and retrain) for `days` days."""
    import time

    from glue import project_code
    from glue.adapters import airflow

    spec = settings.params.data.generator
    if not spec:
        raise GlueError("glue simulate: params.yaml data.generator names no data generator; the "
                        "simulation replays the days a generator writes")
    if days < 1:
        raise GlueError(f"glue simulate: --days must be >= 1, got {days}")
    models = [settings.model(model)] if model else settings.models
    staging = settings.state_dir / "simulation"
    sim = stage_settings(settings, staging)
    _check_label_sources(settings, sim, models)
    generate = project_code.load_callable(spec, settings.project_dir, "data.generator")
    generate({**settings.params.demo, **(overrides or {})}, staging / SOURCE_DIR)
    source = Source.scan(staging / SOURCE_DIR, settings.params.data.events)
    dates = source.days
    first = default_start_day(source, models, warmup_days) if start_day is None else start_day
    if first < 1:
        raise GlueError(f"glue simulate: --start-day must be >= 1, got {first}")
    if first + days > len(dates):
        raise GlueError(f"glue simulate: days {first}..{first + days - 1} asked for, but the generator "
                        f"({spec}) wrote {len(dates)} days of events; ask it for more days (--set) or "
                        "start earlier (--start-day)")

    source.deliver(sim.raw_dir, dates[first - 1])  # the history, until the end of the day before
    champions: dict[str, str] = {}
    for i, spec_ in enumerate(models):  # the first champions (the first run refreshes the features)
        dag_id = airflow.training_dag_id(spec_.name)
        run = airflow.test_dag(sim, dag_id, dates[first - 1], conf=_refresh(i == 0))
        gate = run.returns.get("promote") or {}
        if not gate.get("champion_after"):
            raise GlueError(f"glue simulate: the first {spec_.name} did not become champion: "
                            f"{gate.get('summary')}")
        champions[spec_.name] = str(gate["champion_after"])

    rows: list[DayResult] = []
    for index in range(first, first + days):
        day = dates[index]
        source.deliver(sim.raw_dir, day)
        airflow.test_dag(sim, airflow.FEATURES_DAG, day)
        for spec_ in models:
            rows.append(_model_day(sim, spec_, index, day, time.perf_counter()))
    return SimulationResult(start_day=first, models=[m.name for m in models], days=rows,
                            staging_dir=staging, bootstrap_champions=champions,
                            mlflow_tracking_uri=sim.mlflow_tracking_uri, overrides=dict(overrides or {}))


def default_start_day(source: Source, models: list[ModelSpec], warmup_days: int) -> int:
    """The first simulated day: late enough that each first champion's reference window is mature.

    A first champion trains on the labelled history (labels arrive `source.delay_days` late), holds
    out its `validation_days`, and drift compares against its last `reference_days` of training:
    those must lie after the features' warm-up.
    """
    need = max((m.monitoring.reference_days or warmup_days) + m.validation_days for m in models)
    return warmup_days + need + source.delay_days


def stage_settings(settings: Settings, staging: Path) -> Settings:
    """The settings of the simulation: its own folders (emptied) and, locally, its own MLflow."""
    if staging.exists():
        shutil.rmtree(staging)
    for name in (SOURCE_DIR, "raw", "validated", "quarantine", "features", "monitoring"):
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
    point at the simulation's tables) nor its online store.
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


@dataclass
class _File:
    """One generated file: where it goes, and when each of its rows arrives (None: at once)."""

    relative: Path
    arrivals: np.ndarray | None  # datetime64[ns], UTC, one per row
    delivered: int = -1  # rows delivered so far (-1: nothing yet)


class Source:
    """What the generator wrote, delivered as it arrives (see the module doc)."""

    def __init__(self, root: Path, files: list[_File], days: list[dt.date]) -> None:
        self.root, self.files, self.days = root, files, days

    @classmethod
    def scan(cls, root: Path, events: str) -> Source:
        """Every file under `root`, with its rows' arrival times; the days are those of `events`/."""
        files = [_File(path.relative_to(root), _arrivals(path))
                 for path in sorted(p for p in root.rglob("*") if p.is_file())]
        days = sorted({d for f in files if f.relative.parts[0] == events
                       for d in [_file_day(f.relative)] if d is not None})
        if not days:
            raise GlueError(f"glue simulate: the generator wrote no daily event batches "
                            f"({root / events}/YYYY-MM-DD.parquet)")
        return cls(root, files, days)

    @property
    def delay_days(self) -> int:
        """The most days any file named by a day took to arrive in full (labels known late)."""
        import numpy as np

        delay = 0
        for f in self.files:
            day = _file_day(f.relative)
            if day is not None and f.arrivals is not None and len(f.arrivals):
                last = np.datetime64(f.arrivals.max(), "D").astype(object)
                delay = max(delay, (last - day).days)
        return delay

    def deliver(self, target: Path, day: dt.date) -> None:
        """Write into `target` what had arrived by the end of `day` (UTC)."""
        import numpy as np
        import pyarrow.parquet as pq

        end = np.datetime64(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()), "ns")
        for f in self.files:
            src, dst = self.root / f.relative, target / f.relative
            if f.arrivals is None:
                named = _file_day(f.relative)
                arrived = len_all = 1 if named is None or named <= day else 0
            else:
                mask = f.arrivals <= end
                arrived, len_all = int(mask.sum()), len(mask)
            if arrived == f.delivered or arrived == 0:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if arrived == len_all:
                shutil.copy2(src, dst)
            else:
                pq.write_table(pq.read_table(src).filter(mask), dst)
            f.delivered = arrived


def _model_day(sim: Settings, model: ModelSpec, index: int, day: dt.date, started: float) -> DayResult:
    """One model's monitoring run of the day and, when it asks for one, its retrain."""
    import time

    from glue.adapters import airflow

    dag_id = airflow.monitoring_dag_id(model.name)
    monitored = airflow.test_dag(sim, dag_id, day)
    check: dict[str, Any] = monitored.returns.get("check") or {}
    retrain = monitored.task_states.get("request_retrain") == "success"
    fields: dict[str, Any] = {"index": index, "day": day.isoformat(), "model": model.name,
                              "retrain": retrain, "decision": str(check.get("summary", "")),
                              "drift": bool(check.get("drift")), "decay": bool(check.get("decay"))}
    if retrain:  # the features are today's: glue_features has just run
        training = airflow.training_dag_id(model.name)
        trained = airflow.test_dag(sim, training, day, conf=_refresh(False))
        gate = trained.returns.get("promote") or {}
        fields |= {"trained_version": gate.get("challenger_version"), "promoted": gate.get("promoted"),
                   "champion": gate.get("champion_after")}
    return DayResult(**fields, seconds=time.perf_counter() - started)


def _refresh(needed: bool) -> dict[str, Any]:
    from glue.adapters.airflow import REFRESH_CONF

    return {REFRESH_CONF: needed}


def _check_label_sources(settings: Settings, sim: Settings, models: list[ModelSpec]) -> None:
    """A labels source the simulation cannot replay: one outside the raw folder it fills."""
    for m in models:
        if m.label.source is None:
            continue
        path = Path(m.label.source)
        resolved = path if path.is_absolute() else settings.project_dir / path
        if not resolved.resolve().is_relative_to(sim.raw_dir.resolve()):
            raise GlueError(
                f"glue simulate: params.yaml models.{m.name}.label.source {m.label.source!r} is read "
                f"from {resolved}, not from the simulation's raw folder {sim.raw_dir}: the simulated "
                "days would train on the project's own labels"
            )


def _arrivals(path: Path) -> np.ndarray | None:
    """When each row of a parquet file arrives: the latest of its timestamps (None: no timestamps)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix != ".parquet":
        return None
    schema = pq.read_schema(path)
    columns = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    if not columns:
        return None
    frame = pd.read_parquet(path, columns=columns)
    stamps = [pd.to_datetime(frame[c], utc=True) for c in columns]
    latest = pd.concat(stamps, axis=1).max(axis=1)
    return latest.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]") \
        if len(latest) else np.array([], dtype="datetime64[ns]")


def _file_day(relative: Path) -> dt.date | None:
    try:
        return dt.date.fromisoformat(relative.stem)
    except ValueError:
        return None

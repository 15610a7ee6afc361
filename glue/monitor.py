"""The monitoring stage: is each model's champion still fit for today's data? (`glue monitor`,
the DAGs glue_monitoring__<model>).

One check per model and day:

1. **reference** - the champion's training set, found from its lineage: the registry alias
   ``champion`` → its training run → the sample of training rows with outputs that
   glue/training.py logged there (the contract's ``REFERENCE_ARTIFACT``). No path is configured.
2. **current** - the day's validated events (``current_days`` back), with the features Feast
   served for them (point-in-time) and the champion's outputs; or, when `glue serve` answered
   enough of them, what the prediction log says the model was given and answered.
3. **drift** - Evidently's drift report of the model's feature columns (from the champion's tags)
   and of its output: the score of a classifier, the value of a regressor (monitoring/reports.py).
4. **quality** - delayed labels: the model's labelled rows the champion never saw (after its
   validation window) whose labels were known by the end of the day, in the task's metric
   (average precision, rmse, ...), against the same metric on the champion's validation rows.
5. **decision** - drift? decay? retrain? under the model's policy (``models.<name>.monitoring``
   over ``defaults.monitoring``; monitoring/policy.py), with a cooldown so one drift does not
   train a model every day.

Every check leaves ``<monitoring_dir>/<model>/<day>/``: Evidently HTML and JSON, ``decision.json``
and ``metrics.prom``; an MLflow run in the model's monitoring experiment (one per day: re-running
a day reuses it) with the same files, linked to the champion's model; a tag on the champion's
version; and an alert when there is drift or decay. The champion, the registry and the stores are
only read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import atomic, contract
from glue.contract import CHAMPION, PREDICTION_COLUMN
from glue.errors import GlueError
from monitoring.policy import QUALITY_DIRECTION, Decision, DriftFinding, QualityFinding, decide

if TYPE_CHECKING:
    import pandas as pd

    from glue.adapters.mlflow import VersionRef
    from glue.settings import ModelSpec, Settings

log = logging.getLogger("glue.monitor")

DECISION_FILE = "decision.json"
METRICS_FILE = "metrics.prom"
TIMESTAMP = "event_timestamp"  # the event time of a training frame's (and the reference's) rows
BINARY = "binary_classification"
# quality metric in the policy → the training-run metric it falls back to without validation rows
BASELINE_METRIC = {"average_precision": "average_precision", "roc_auc": "roc_auc",
                   "precision": "precision_at_threshold", "recall": "recall_at_threshold",
                   "rmse": "rmse", "mae": "mae", "r2": "r2"}


@dataclass(frozen=True)
class CheckResult:
    """One day's check of one model: what was compared, what was found, what was decided, where it went."""

    day: dt.date
    model: str
    champion_version: str | None
    reference_rows: int
    current_rows: int
    drift: DriftFinding | None
    quality: QualityFinding | None
    decision: Decision
    out_dir: Path
    run_id: str | None
    alert: str
    seconds: float

    def summary(self) -> str:
        verdict = ", ".join(f"{name} {'yes' if flag else 'no'}" for name, flag in
                            (("drift", self.decision.drift), ("decay", self.decision.decay),
                             ("retrain", self.decision.retrain)))
        champion = f"v{self.champion_version}" if self.champion_version else "no champion"
        lines = [f"check {self.model} {self.day}: {verdict} ({champion}; reference {self.reference_rows} "
                 f"rows, current {self.current_rows} rows; {self.seconds:.1f} s)"]
        lines += [f"  {reason}" for reason in self.decision.reasons]
        lines.append(f"  reports: {self.out_dir}" + (f"; MLflow run {self.run_id}" if self.run_id else ""))
        if self.alert:
            lines.append(f"  alert: {self.alert}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Windows:
    """The days one check looks at: the current window, and where the quality window may start."""

    current_start: dt.date
    current_end: dt.date  # exclusive: the day after the checked day, when its labels are counted
    quality_after: dt.date | None  # the champion's validation end: it saw nothing from then on
    quality_days: int

    @property
    def labels_known_at(self) -> dt.datetime:
        return dt.datetime.combine(self.current_end, dt.time(), tzinfo=dt.UTC)

    def as_dict(self) -> dict[str, str]:
        return {"current_start": self.current_start.isoformat(),
                "current_end": self.current_end.isoformat(),
                "labels_known_at": self.current_end.isoformat(),
                "quality_after": self.quality_after.isoformat() if self.quality_after else "",
                "quality_days": str(self.quality_days)}


@dataclass(frozen=True)
class Labelled:
    """The quality window: labelled rows the champion never saw, with its outputs, and their days."""

    rows: pd.DataFrame
    start: dt.date | None  # first day of the window (None: no labelled row yet)
    end: dt.date | None  # exclusive


def check_all(settings: Settings, day: dt.date | None = None,
              model: str | None = None) -> list[CheckResult]:
    """`glue monitor`: the day's check of one model (by name) or of every model of the project.

    Without a day, each model is checked on the newest day with a validated event batch.
    """
    when = day or last_data_day(settings)
    specs = [settings.model(model)] if model else settings.models
    return [check(settings, spec, when) for spec in specs]


def check(settings: Settings, model: ModelSpec, day: dt.date) -> CheckResult:
    """Run one model's drift and quality check of the day and record its decision (module doc)."""
    from glue.adapters import mlflow

    start = time.perf_counter()
    params = model.monitoring
    folder = model_dir(settings, model)
    out_dir = folder / day.isoformat()
    if out_dir.exists():
        shutil.rmtree(out_dir)  # re-running a day replaces its record, never adds to it
    out_dir.mkdir(parents=True)

    mlflow.configure(settings)
    champion = mlflow.get_alias(model.name, CHAMPION)
    cooling = cooling_down(folder, day, params.cooldown_days)
    if champion is None:
        decision = Decision(drift=False, decay=False, retrain=cooling is None, reasons=[
            f"no champion: registered model {model.name!r} has no alias {CHAMPION!r} yet",
            *([f"retrain held back: {cooling}"] if cooling else ["retrain: requested (first model)"]),
        ])
        result = CheckResult(day=day, model=model.name, champion_version=None, reference_rows=0,
                             current_rows=0, drift=None, quality=None, decision=decision,
                             out_dir=out_dir, run_id=None, alert="", seconds=0.0)
        return _record(settings, model, result, champion=None, extra={}, started=start)

    reference = load_reference(settings, model, champion)
    windows = _pooled(settings, model, _windows(model, champion, day))
    estimator = mlflow.load_sklearn_model(champion.uri)
    current, source = _current(settings, model, champion, estimator, windows)
    labelled = _labelled(settings, model, champion, estimator, windows)

    from monitoring import reports

    drift = None
    if len(current) >= params.drift.min_current_rows:
        drift, _ = reports.drift_report(reference, current, _feature_columns(champion), params.drift,
                                        out_dir, prediction=PREDICTION_COLUMN, time_column=TIMESTAMP)
    quality = _quality(settings, model, champion, labelled, windows, out_dir)
    decision = decide(params, drift, quality, cooling)
    result = CheckResult(day=day, model=model.name, champion_version=champion.version,
                         reference_rows=len(reference), current_rows=len(current), drift=drift,
                         quality=quality, decision=decision, out_dir=out_dir, run_id=None, alert="",
                         seconds=0.0)
    bounds = {"quality_start": labelled.start.isoformat(), "quality_end": labelled.end.isoformat()} \
        if labelled.start and labelled.end else {}
    return _record(settings, model, result, champion=champion,
                   extra={"windows": {**windows.as_dict(), **bounds, "current_source": source}},
                   started=start)


def model_dir(settings: Settings, model: ModelSpec) -> Path:
    """<monitoring_dir>/<model>/: one folder per checked day of this model."""
    return settings.monitoring_dir / model.name


def last_data_day(settings: Settings) -> dt.date:
    """The newest day with a validated event batch: what `glue monitor` checks by default."""
    folder = settings.validated_events_dir
    days = sorted(p.stem for p in folder.glob("*.parquet"))
    if not days:
        raise GlueError(f"no validated batches in {folder}; run `glue validate-batches` first")
    try:
        return dt.date.fromisoformat(days[-1])
    except ValueError as exc:
        raise GlueError(f"{folder / days[-1]}.parquet: batch files are named YYYY-MM-DD.parquet") from exc


def load_reference(settings: Settings, model: ModelSpec, champion: VersionRef) -> pd.DataFrame:
    """The champion's training rows (a sample, with its outputs), from its training run's artifacts.

    Only the last ``reference_days`` days of it (the model's policy), when the sample has
    timestamps. Cached under the state dir by run id: a run's artifacts never change.
    """
    import pandas as pd

    from glue.adapters import mlflow

    run_id = champion.tags.get(contract.TRAIN_RUN_ID) or champion.run_id
    if not run_id:
        raise GlueError(f"{champion.name} v{champion.version}: no training run in its lineage "
                        f"(tag {contract.TRAIN_RUN_ID}); retrain it with `glue train --model {model.name}`")
    path = mlflow.cached_artifact(settings, run_id, contract.REFERENCE_ARTIFACT)
    if path is None:
        raise GlueError(
            f"{champion.name} v{champion.version}: its training run {run_id} has no "
            f"{contract.REFERENCE_ARTIFACT} (trained before monitoring existed?); retrain with "
            f"`glue train --model {model.name}` and promote, or see the run in the MLflow UI"
        )
    return reference_window(pd.read_parquet(path), model.monitoring.reference_days)


def reference_window(reference: pd.DataFrame, days: int | None) -> pd.DataFrame:
    """The last `days` days of a champion's reference sample (all of it for None, or untimed rows)."""
    import pandas as pd

    if days is not None and TIMESTAMP in reference.columns and len(reference):
        last_day = reference[TIMESTAMP].max().normalize()
        reference = reference[reference[TIMESTAMP] >= last_day - pd.Timedelta(days=days - 1)]
    return reference.reset_index(drop=True)


def cooling_down(model_dir: Path, day: dt.date, days: int) -> str | None:
    """Why a retrain would come too soon: a retrain requested in the `days` days before `day`."""
    for back in range(1, days + 1):
        earlier = day - dt.timedelta(days=back)
        record = model_dir / earlier.isoformat() / DECISION_FILE
        if record.is_file():
            try:
                if json.loads(record.read_text())["decision"]["retrain"]:
                    return f"a retrain was requested on {earlier}"
            except (ValueError, KeyError):
                continue
    return None


def _feature_columns(champion: VersionRef) -> list[str]:
    columns = contract.feature_columns(champion.tags)
    if not columns:
        raise GlueError(f"{champion.name} v{champion.version} has no tag {contract.FEATURE_COLUMNS}")
    return columns


def _windows(model: ModelSpec, champion: VersionRef, day: dt.date) -> Windows:
    """The current window (the checked days) and the quality window (labelled, unseen by the champion)."""
    params = model.monitoring
    end = day + dt.timedelta(days=1)
    seen_until = champion.tags.get(contract.VALIDATION_END, "")
    return Windows(current_start=end - dt.timedelta(days=params.current_days), current_end=end,
                   quality_after=dt.date.fromisoformat(seen_until[:10]) if seen_until else None,
                   quality_days=params.quality.window_days)


def _pooled(settings: Settings, model: ModelSpec, windows: Windows) -> Windows:
    """The current window grown back over the days before it while it holds too few rows.

    A day of a few hundred events is too noisy for the drift distances (monitoring/policy.py
    ``window_days``); the rows counted are the validated events of each day.
    """
    import dataclasses

    import pandas as pd

    from glue import features
    from monitoring.policy import window_days

    drift = model.monitoring.drift
    current = (windows.current_end - windows.current_start).days
    span = max(drift.max_window_days, current)
    since = windows.current_end - dt.timedelta(days=span)
    try:
        events = features.read_events(settings, since=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC),
                                      until=windows.labels_known_at)
    except GlueError:
        return windows
    day = pd.to_datetime(events[TIMESTAMP], utc=True).dt.date
    counts = day.value_counts()
    rows_by_day = [int(counts.get(windows.current_end - dt.timedelta(days=back), 0))
                   for back in range(1, span + 1)]
    if not rows_by_day[0]:  # no events on the day itself: the check says so for that day
        return windows
    days = window_days(drift, rows_by_day, current)
    return dataclasses.replace(windows, current_start=windows.current_end - dt.timedelta(days=days))


def _current(settings: Settings, model: ModelSpec, champion: VersionRef, estimator: Any,
             windows: Windows) -> tuple[pd.DataFrame, str]:
    """The current window and where it came from: as `glue serve` answered it, if it answered enough.

    What the champion was given online (features from the online store, the output it answered)
    is what drift must be measured on; the validated events re-scored with offline features are
    the fallback for days the server did not see (batch-only use, a replay, a server that was down).
    """
    from glue import prediction_log

    served = prediction_log.read_served(settings, windows.current_start, windows.current_end,
                                        model.name, champion.version, prediction=PREDICTION_COLUMN)
    if len(served) >= model.monitoring.drift.min_current_rows:
        return served, f"prediction log ({len(served)} served predictions)"
    batch = _scored_events(settings, model, champion, estimator, windows)
    return batch, (f"validated batches ({len(batch)} events scored offline; "
                   f"{len(served)} served predictions in the prediction log)")


def _scored_events(settings: Settings, model: ModelSpec, champion: VersionRef, estimator: Any,
                   windows: Windows) -> pd.DataFrame:
    """The current window's rows with their point-in-time features and the champion's output.

    The rows are the model's own kind, as in its training set (the drift reference): the day's
    validated events for a model labelled per event; for a model labelled per entity (its label
    keyed by other columns than the event id), one row per entity active on the day, as of the
    day's end: the snapshot of that entity a per-entity model scores next.
    """
    import pandas as pd

    from glue import features
    from glue.adapters import feast

    events = features.read_events(
        settings, since=dt.datetime.combine(windows.current_start, dt.time(), tzinfo=dt.UTC),
        until=dt.datetime.combine(windows.current_end, dt.time(), tzinfo=dt.UTC))
    day = pd.to_datetime(events[TIMESTAMP], utc=True).dt.normalize()
    inside = (day >= pd.Timestamp(windows.current_start, tz="UTC")) & \
             (day < pd.Timestamp(windows.current_end, tz="UTC"))
    if not inside.any():
        raise GlueError(
            f"no validated events in {settings.validated_events_dir} between {windows.current_start} "
            f"and {windows.current_end}: has the day's batch arrived and passed `glue validate-batches`?"
        )
    store = feast.open_store(settings)
    rows = events[inside]
    keys = _label_keys(settings, model, store)
    if settings.params.data.event_id not in keys and keys and set(keys) <= set(rows.columns):
        end_of_day = day[inside] + pd.Timedelta(days=1)
        rows = (rows.assign(**{TIMESTAMP: end_of_day}).drop_duplicates([*keys, TIMESTAMP])
                .sort_values(TIMESTAMP, kind="stable"))
    frame, columns = features.scoring_frame(settings, model, rows.reset_index(drop=True), store)
    return _score(model, champion, estimator, frame, columns)


def _label_keys(settings: Settings, model: ModelSpec, store: Any) -> list[str]:
    """The columns that key the model's label rows (a label view's entities, or a source's keys)."""
    if model.label.view is None:
        return list(model.label.join_keys)
    from glue.adapters import feast

    return list(feast.label_rows(settings, store, model.label.view).join_keys)


def _labelled(settings: Settings, model: ModelSpec, champion: VersionRef, estimator: Any,
              windows: Windows) -> Labelled:
    """The model's labelled rows known by the end of the day that the champion never saw, scored.

    The latest ``quality.window_days`` days of them, after the champion's validation window.
    """
    import pandas as pd

    from glue import features

    # only the days after the champion's validation window can be in it: no full-history join
    since = (dt.datetime.combine(windows.quality_after, dt.time(), tzinfo=dt.UTC)
             if windows.quality_after is not None else None)
    if since is not None and features.read_label_rows(settings, model, until=windows.labels_known_at,
                                                      since=since).empty:
        return Labelled(rows=pd.DataFrame({model.label.field: pd.Series(dtype="float64"),
                                           PREDICTION_COLUMN: pd.Series(dtype="float64")}),
                        start=None, end=None)
    frame = features.training_frame(settings, model, until=windows.labels_known_at, since=since)
    rows, days = quality_window(frame.df, windows)
    if rows.empty:
        return Labelled(rows=rows.assign(**{PREDICTION_COLUMN: pd.Series(dtype="float64")}),
                        start=None, end=None)
    scored = _score(model, champion, estimator, rows, frame.feature_columns)
    return Labelled(rows=scored, start=days[0].date(), end=(days[-1] + pd.Timedelta(days=1)).date())


def quality_window(df: pd.DataFrame, windows: Windows) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Of labelled rows known by the check, those of the latest ``quality_days`` days before the
    window's end and after the champion's validation window; and those days."""
    import pandas as pd

    day = pd.to_datetime(df[TIMESTAMP], utc=True).dt.normalize()
    keep = day < pd.Timestamp(windows.current_end, tz="UTC")
    if windows.quality_after is not None:
        keep &= day >= pd.Timestamp(windows.quality_after, tz="UTC")
    days = sorted(day[keep].unique())[-windows.quality_days:]
    return df[keep & day.isin(days)].reset_index(drop=True), days


def _score(model: ModelSpec, champion: VersionRef, estimator: Any, frame: pd.DataFrame,
           columns: list[str]) -> pd.DataFrame:
    """`frame` with the champion's output (P(positive), or the value) in the prediction column."""
    from glue import training

    wanted = _feature_columns(champion)
    missing = sorted(set(wanted) - set(columns))
    if missing:
        raise GlueError(
            f"{champion.name} v{champion.version} was trained on feature(s) {', '.join(missing)} that "
            f"feature service {model.feature_service!r} no longer serves"
        )
    out = frame.copy()
    out[PREDICTION_COLUMN] = training.predict(estimator, model.task, out[wanted].astype("float64"))
    return out


def _quality(settings: Settings, model: ModelSpec, champion: VersionRef, labelled: Labelled,
             windows: Windows, out_dir: Path) -> QualityFinding:
    """The champion's quality metric on the labelled window, next to its value at validation."""
    import pandas as pd

    from glue.adapters import mlflow

    name = model.monitoring.quality.metric or ""
    label = model.label.field
    binary = model.task == BINARY
    rows = labelled.rows
    window = (f"{labelled.start} .. {labelled.end}" if labelled.start
              else f"labels known at {windows.current_end}")
    metric = quality_metric(name, model.decision_threshold)
    baseline, validation = None, None
    run_id = champion.tags.get(contract.TRAIN_RUN_ID) or champion.run_id
    if run_id:
        path = mlflow.cached_artifact(settings, run_id, contract.VALIDATION_ARTIFACT)
        if path is not None:
            validation = pd.read_parquet(path)
            baseline = float(metric(*_target_and_output(validation, label, binary)))
        else:
            _, _, metrics = mlflow.run_data(run_id)
            baseline = metrics.get(BASELINE_METRIC[name])
    finding = measure_quality(model, rows, validation, baseline, window,
                              after=str(windows.quality_after or "its training"))
    if finding.value is not None:
        from monitoring import reports

        reports.quality_report(rows.rename(columns={label: "target"}), "target", PREDICTION_COLUMN,
                               model.task, model.decision_threshold, out_dir)
    return finding


def measure_quality(model: ModelSpec, rows: pd.DataFrame, validation: pd.DataFrame | None,
                    baseline: float | None, window: str, after: str) -> QualityFinding:
    """The quality metric on scored labelled rows and, with the validation rows, the bootstrap
    interval of its drop; None as the value when the policy's minimum rows (positives) are missing."""
    policy = model.monitoring.quality
    name = policy.metric or ""
    label = model.label.field
    binary = model.task == BINARY
    positives = int(rows[label].sum()) if binary and len(rows) else (0 if binary else None)
    too_few = len(rows) < policy.min_rows or (binary and (positives or 0) < policy.min_positives)
    if too_few:
        needs = f"{policy.min_rows} rows" + (f" and {policy.min_positives} positive" if binary else "")
        found = f"{len(rows)} labelled rows" + (f" with {positives} positive" if binary else "")
        return QualityFinding(metric=name, value=None, baseline=baseline, rows=len(rows),
                              positives=positives, window=window,
                              reason=f"{found} after {after}; the policy needs {needs}")
    metric = quality_metric(name, model.decision_threshold)
    current = _target_and_output(rows, label, binary)
    value = float(metric(*current))
    low = high = None
    if validation is not None:
        low, high = drop_interval(_target_and_output(validation, label, binary), current, metric,
                                  policy.bootstrap_samples, policy.confidence,
                                  direction=QUALITY_DIRECTION[name], binary=binary)
    return QualityFinding(metric=name, value=value, baseline=baseline, rows=len(rows),
                          positives=positives, window=window, drop_low=low, drop_high=high)


def quality_metric(name: str, threshold: float | None = None) -> Any:
    """metric(y, outputs) for a policy metric name, computed as glue/training.py computes it."""
    import numpy as np
    from sklearn import metrics as m

    cut = 0.5 if threshold is None else threshold
    return {
        "average_precision": m.average_precision_score,
        "roc_auc": m.roc_auc_score,
        "precision": lambda y, s: m.precision_score(y, s >= cut, zero_division=0),
        "recall": lambda y, s: m.recall_score(y, s >= cut, zero_division=0),
        "rmse": lambda y, s: float(np.sqrt(m.mean_squared_error(y, s))),
        "mae": m.mean_absolute_error,
        "r2": m.r2_score,
    }[name]


def drop_interval(baseline: tuple[Any, Any], current: tuple[Any, Any], metric: Any, samples: int,
                  confidence: float, seed: int = 0, *, direction: str = "max",
                  binary: bool = True) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of how much worse metric(current) is than metric(baseline).

    The drop is baseline - current for a metric where higher is better (``direction`` "max"),
    current - baseline where lower is (rmse, mae). Two independent windows (validation, and the
    labelled days since), each with its own noise: resampling both is what makes "the drop is
    surely beyond the limit" a fair statement. A resample where the metric is undefined (one class
    only, for a classifier; a constant target, for r2) is skipped.
    """
    import numpy as np

    sign = 1.0 if direction == "max" else -1.0
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(samples):
        parts = []
        for y, s in (baseline, current):
            idx = rng.integers(0, len(y), len(y))
            if binary and not 0 < y[idx].sum() < len(idx):
                break
            if not binary and np.ptp(y[idx]) == 0:
                break
            parts.append(metric(y[idx], s[idx]))
        if len(parts) == 2:
            drops.append(sign * (parts[0] - parts[1]))
    if not drops:
        return None, None
    tail = (1 - confidence) / 2
    return float(np.quantile(drops, tail)), float(np.quantile(drops, 1 - tail))


def _target_and_output(df: pd.DataFrame, label: str, binary: bool) -> tuple[Any, Any]:
    y = df[label].to_numpy().astype(int if binary else "float64")
    return y, df[PREDICTION_COLUMN].to_numpy().astype("float64")


def _record(settings: Settings, model: ModelSpec, result: CheckResult, *, champion: VersionRef | None,
            extra: dict[str, Any], started: float | None = None) -> CheckResult:
    """decision.json, metrics.prom, the MLflow run, the champion's tag and the alert."""
    from monitoring import alerts

    record = {
        "day": result.day.isoformat(),
        "model": result.model,
        "champion_version": result.champion_version,
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        "decision": result.decision.as_dict(),
        "drift": asdict(result.drift) if result.drift else None,
        "quality": asdict(result.quality) if result.quality else None,
        **extra,
    }
    alert = ""
    if result.decision.drift or result.decision.decay:
        what = " and ".join(w for w, f in (("drift", result.decision.drift),
                                          ("decay", result.decision.decay)) if f)
        text = (f"mlops-glue: {what} on {result.day} for {result.model} v{result.champion_version}; "
                + "; ".join(result.decision.reasons))
        outcome = alerts.send_alert(settings.alert_webhook_url, {"text": text, **record})
        alert = f"{outcome.status}" + (f" ({outcome.detail})" if outcome.detail else "")
    record["alert"] = alert
    (result.out_dir / DECISION_FILE).write_text(json.dumps(record, indent=2, default=str))
    prom = _prometheus(result)
    (result.out_dir / METRICS_FILE).write_text(prom)
    # the latest check of each model, side by side in one folder: what node_exporter's textfile
    # collector reads
    atomic.write_text(settings.monitoring_dir / latest_metrics_file(model), prom)

    run_id = _log_to_mlflow(settings, model, result, champion)
    seconds = time.perf_counter() - started if started is not None else 0.0
    return CheckResult(**{**result.__dict__, "run_id": run_id, "alert": alert, "seconds": seconds})


def latest_metrics_file(model: ModelSpec) -> str:
    """The name of a model's latest metrics.prom in the monitoring folder."""
    return f"{model.name}.prom"


def _prometheus(result: CheckResult) -> str:
    from monitoring import prometheus

    base = {"model": result.model, "version": result.champion_version or "none"}
    samples: list[tuple[str, str, dict[str, str], float | None]] = [
        ("check_timestamp_seconds", "Day of the latest check (UTC midnight, epoch seconds)", base,
         dt.datetime.combine(result.day, dt.time(), tzinfo=dt.UTC).timestamp()),
        ("drift", "1 if the latest check found drift", base, float(result.decision.drift)),
        ("decay", "1 if the latest check found quality decay", base, float(result.decision.decay)),
        ("retrain_requested", "1 if the latest check requested a retrain", base,
         float(result.decision.retrain)),
        ("current_rows", "Rows in the checked window", base, float(result.current_rows)),
    ]
    if result.drift:
        samples += [
            ("drifted_feature_share", "Share of the model's features that drifted", base, result.drift.share),
            ("prediction_drift_score", "Drift score of the model's scores", base,
             result.drift.prediction_score),
        ]
        samples += [("feature_drift_score", "Evidently drift score per feature", {**base, "feature": c}, v)
                    for c, v in sorted(result.drift.scores.items())]
    if result.quality and result.quality.value is not None:
        q = {**base, "metric": result.quality.metric}
        samples += [("quality", "Model quality on the latest labelled window", q, result.quality.value),
                    ("quality_baseline", "The same metric at validation", q, result.quality.baseline)]
    return prometheus.render(samples)


def _log_to_mlflow(settings: Settings, model: ModelSpec, result: CheckResult,
                   champion: VersionRef | None) -> str:
    """One run per checked day in the model's monitoring experiment; re-running a day reuses it."""
    from glue.adapters import mlflow

    experiment_id = mlflow.ensure_experiment(settings, model.monitoring.experiment_name
                                               or f"{model.name}-monitoring")
    day = result.day.isoformat()
    tags = {
        contract.MONITOR_DAY: day,
        contract.MONITOR_MODEL: result.model,
        contract.MONITOR_MODEL_VERSION: result.champion_version or "",
        contract.MONITOR_DRIFT: str(result.decision.drift).lower(),
        contract.MONITOR_DECAY: str(result.decision.decay).lower(),
        contract.MONITOR_RETRAIN: str(result.decision.retrain).lower(),
        "mlflow.note.content": "\n".join(f"- {r}" for r in result.decision.reasons),
    }
    metrics: dict[str, float] = {"drift": float(result.decision.drift),
                                 "decay": float(result.decision.decay),
                                 "retrain": float(result.decision.retrain),
                                 "current_rows": float(result.current_rows)}
    if result.drift:
        metrics["drifted_feature_share"] = result.drift.share
        if result.drift.prediction_score is not None:
            metrics["prediction_drift_score"] = result.drift.prediction_score
        metrics |= {f"drift_score.{c}": v for c, v in result.drift.scores.items()}
    if result.quality and result.quality.value is not None:
        metrics[f"quality.{result.quality.metric}"] = result.quality.value
    run_id = mlflow.log_check_run(
        experiment_id, run_name=f"check-{day}",
        match={contract.MONITOR_DAY: day, contract.MONITOR_MODEL: model.name}, tags=tags, metrics=metrics,
        artifacts=result.out_dir, artifact_path=contract.MONITORING_ARTIFACT_DIR,
        model_id=champion.model_id if champion else None)
    if champion is not None:
        flags = " ".join(f"{k}={tags[key]}" for k, key in (("drift", contract.MONITOR_DRIFT),
                                                            ("decay", contract.MONITOR_DECAY),
                                                            ("retrain", contract.MONITOR_RETRAIN)))
        verdict = f"{day}: {flags} (run {run_id})"
        mlflow.set_version_tags(champion.name, champion.version, {contract.MONITOR_LAST_CHECK: verdict})
    return run_id

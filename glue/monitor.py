"""The monitoring stage: is the champion still fit for today's data? (`glue monitor`, glue_monitoring).

One check per day:

1. **reference** - the champion's training set, found from its lineage: the registry alias
   ``champion`` → its training run → the sample of training rows with scores that glue/training.py
   logged there (``monitoring/reference.parquet``). No file path is configured anywhere.
2. **current** - the day's validated transactions (``current_days`` back), with the features Feast
   served for them (point-in-time) and the champion's scores.
3. **drift** - Evidently's drift report of the features and the scores (monitoring/reports.py).
4. **quality** - delayed labels: the transactions the champion never saw (after its validation
   window) whose labels have arrived by the end of the day, scored against the champion's own
   validation metric.
5. **decision** - drift? decay? retrain? under the policy in ``params.yaml`` (monitoring/policy.py),
   with a cooldown so one drift does not train a model every day.

Every check leaves ``<monitoring_dir>/<day>/``: Evidently HTML and JSON, ``decision.json`` and
``metrics.prom``; an MLflow run in the monitoring experiment (one per day: re-running a day reuses
it) with the same files, linked to the champion's model; a tag on the champion's version; and an
alert when there is drift or decay. The champion, the registry and the stores are only read.
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
from monitoring.policy import Decision, DriftFinding, QualityFinding, decide

if TYPE_CHECKING:
    import pandas as pd

    from glue.settings import Settings
    from glue.tracking import VersionRef

log = logging.getLogger("glue.monitor")

DECISION_FILE = "decision.json"
METRICS_FILE = "metrics.prom"
# quality metric in the policy → the champion's training-run metric it is compared with
BASELINE_METRIC = {"average_precision": "average_precision", "roc_auc": "roc_auc",
                   "precision": "precision_at_threshold", "recall": "recall_at_threshold"}


@dataclass(frozen=True)
class CheckResult:
    """One day's check: what was compared, what was found, what was decided, where it went."""

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
        champion = f"{self.model} v{self.champion_version}" if self.champion_version else "no champion"
        lines = [f"check {self.day}: {verdict} ({champion}; reference {self.reference_rows} rows, "
                 f"current {self.current_rows} rows; {self.seconds:.1f} s)"]
        lines += [f"  {reason}" for reason in self.decision.reasons]
        lines.append(f"  reports: {self.out_dir}" + (f"; MLflow run {self.run_id}" if self.run_id else ""))
        if self.alert:
            lines.append(f"  alert: {self.alert}")
        return "\n".join(lines)


def check(settings: Settings, day: dt.date) -> CheckResult:
    """Run the day's drift and quality check and record its decision (see the module doc)."""
    from glue import tracking

    start = time.perf_counter()
    params = settings.params.monitoring
    model = settings.params.train.registered_model_name
    out_dir = settings.monitoring_dir / day.isoformat()
    if out_dir.exists():
        shutil.rmtree(out_dir)  # re-running a day replaces its record, never adds to it
    out_dir.mkdir(parents=True)

    tracking.configure(settings)
    champion = tracking.get_alias(model, CHAMPION)
    cooling = cooling_down(settings.monitoring_dir, day, params.cooldown_days)
    if champion is None:
        decision = Decision(drift=False, decay=False, retrain=cooling is None, reasons=[
            f"no champion: registered model {model!r} has no alias {CHAMPION!r} yet",
            *([f"retrain held back: {cooling}"] if cooling else ["retrain: requested (first model)"]),
        ])
        result = CheckResult(day=day, model=model, champion_version=None, reference_rows=0,
                             current_rows=0, drift=None, quality=None, decision=decision,
                             out_dir=out_dir, run_id=None, alert="", seconds=0.0)
        return _record(settings, result, champion=None, extra={}, started=start)

    reference = load_reference(settings, champion)
    windows = _windows(settings, champion, day)
    scored = _scored_windows(settings, champion, windows)
    current = _served_or_batch(settings, champion, windows, scored[scored["_window"] == "current"])
    labelled = scored[scored["_window"] == "quality"]

    from monitoring import reports

    drift = None
    if len(current) >= params.drift.min_current_rows:
        drift, _ = reports.drift_report(reference, current, _feature_columns(champion), params.drift,
                                        out_dir, prediction=PREDICTION_COLUMN)
    quality = _quality(settings, champion, labelled, windows, out_dir)
    decision = decide(params, drift, quality, cooling)
    result = CheckResult(day=day, model=model, champion_version=champion.version,
                         reference_rows=len(reference), current_rows=len(current), drift=drift,
                         quality=quality, decision=decision, out_dir=out_dir, run_id=None, alert="",
                         seconds=0.0)
    return _record(settings, result, champion=champion, extra={"windows": windows},
                   started=start)


def last_data_day(settings: Settings) -> dt.date:
    """The newest day with a validated transaction batch: what `glue monitor` checks by default."""
    folder = settings.validated_dir / "transactions"
    days = sorted(p.stem for p in folder.glob("*.parquet"))
    if not days:
        raise GlueError(f"no validated batches in {folder}; run `glue validate-batches` first")
    try:
        return dt.date.fromisoformat(days[-1])
    except ValueError as exc:
        raise GlueError(f"{folder / days[-1]}.parquet: batch files are named YYYY-MM-DD.parquet") from exc


def load_reference(settings: Settings, champion: VersionRef) -> pd.DataFrame:
    """The champion's training rows (a sample, with its scores), from its training run's artifacts.

    Only the last ``reference_days`` days of it (policy), when the sample has timestamps.
    Cached under the state dir by run id: a run's artifacts never change.
    """
    import pandas as pd

    from glue import tracking

    run_id = champion.tags.get(contract.TRAIN_RUN_ID) or champion.run_id
    if not run_id:
        raise GlueError(f"{champion.name} v{champion.version}: no training run in its lineage "
                        f"(tag {contract.TRAIN_RUN_ID}); retrain it with `glue train`")
    path = tracking.cached_artifact(settings, run_id, contract.REFERENCE_ARTIFACT)
    if path is None:
        raise GlueError(
            f"{champion.name} v{champion.version}: its training run {run_id} has no "
            f"{contract.REFERENCE_ARTIFACT} (trained before monitoring existed?); "
            "retrain with `glue train` and promote, or see the run in the MLflow UI"
        )
    reference = pd.read_parquet(path)
    days = settings.params.monitoring.reference_days
    if days is not None and "event_timestamp" in reference.columns and len(reference):
        last_day = reference["event_timestamp"].max().normalize()
        reference = reference[reference["event_timestamp"] >= last_day - pd.Timedelta(days=days - 1)]
    return reference.reset_index(drop=True)


def cooling_down(monitoring_dir: Path, day: dt.date, days: int) -> str | None:
    """Why a retrain would come too soon: a retrain requested in the `days` days before `day`."""
    for back in range(1, days + 1):
        earlier = day - dt.timedelta(days=back)
        record = monitoring_dir / earlier.isoformat() / DECISION_FILE
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


def _windows(settings: Settings, champion: VersionRef, day: dt.date) -> dict[str, str]:
    """The current window (the checked days) and the quality window (labelled, unseen by the champion)."""
    params = settings.params.monitoring
    end = day + dt.timedelta(days=1)  # exclusive: the whole checked day
    seen_until = champion.tags.get(contract.VALIDATION_END, "")
    return {
        "current_start": (end - dt.timedelta(days=params.current_days)).isoformat(),
        "current_end": end.isoformat(),
        "labels_known_at": end.isoformat(),
        "quality_after": seen_until[:10] if seen_until else "",
        "quality_days": str(params.quality.window_days),
    }


def _scored_windows(settings: Settings, champion: VersionRef, windows: dict[str, str]) -> pd.DataFrame:
    """Current and labelled-window transactions with their Feast features and champion scores.

    One Feast call for both windows: the point-in-time join dominates the check's time.
    """
    import pandas as pd

    from glue import feature_store, features, tracking

    tx = features.read_transactions(settings)
    day = tx["event_timestamp"].dt.tz_convert("UTC").dt.normalize()
    current_start = pd.Timestamp(windows["current_start"], tz="UTC")
    current_end = pd.Timestamp(windows["current_end"], tz="UTC")
    current = tx[(day >= current_start) & (day < current_end)].assign(_window="current")

    labels = features.read_labels(settings)
    known = labels[labels["label_timestamp"] < current_end]
    pool = tx[tx["transaction_id"].isin(known["transaction_id"])]
    if windows["quality_after"]:
        pool = pool[day.loc[pool.index] >= pd.Timestamp(windows["quality_after"], tz="UTC")]
    pool_days = sorted(day.loc[pool.index].unique())[-int(windows["quality_days"]):]
    labelled = pool[day.loc[pool.index].isin(pool_days)].assign(_window="quality")
    if pool_days:
        windows["quality_start"] = pool_days[0].date().isoformat()
        windows["quality_end"] = (pool_days[-1] + pd.Timedelta(days=1)).date().isoformat()

    both = pd.concat([current, labelled], ignore_index=True)
    if both.empty:
        raise GlueError(
            f"no validated transactions in {settings.validated_dir / 'transactions'} between "
            f"{windows['current_start']} and {windows['current_end']}: has the day's batch arrived "
            "and passed `glue validate-batches`?"
        )
    store = feature_store.open_store(settings)
    frame, columns = features.scoring_frame(settings, both.drop(columns="_window"), store)
    frame = frame.merge(both[["transaction_id", "_window"]], on="transaction_id", how="left")
    wanted = _feature_columns(champion)
    missing = sorted(set(wanted) - set(columns))
    if missing:
        raise GlueError(
            f"{champion.name} v{champion.version} was trained on feature(s) {', '.join(missing)} that "
            f"feature service {settings.params.features.feature_service!r} no longer serves"
        )
    model = tracking.load_sklearn_model(champion.uri)
    frame[PREDICTION_COLUMN] = model.predict_proba(frame[wanted].astype("float64"))[:, 1]
    return frame.merge(known[["transaction_id", features.LABEL_COLUMN]], on="transaction_id", how="left")


def _served_or_batch(settings: Settings, champion: VersionRef, windows: dict[str, str],
                     batch: pd.DataFrame) -> pd.DataFrame:
    """The current window as `glue serve` answered it, when it answered enough of it.

    What the champion was given online (features from the online store, the score it answered)
    is what drift must be measured on; the validated batch re-scored with offline features is the
    fallback for days the server did not see (batch-only use, a replay, a server that was down).
    """
    from glue import prediction_log

    start = dt.date.fromisoformat(windows["current_start"])
    end = dt.date.fromisoformat(windows["current_end"])
    served = prediction_log.read_served(settings, start, end, champion.version,
                                        prediction=PREDICTION_COLUMN)
    if len(served) >= settings.params.monitoring.drift.min_current_rows:
        windows["current_source"] = f"prediction log ({len(served)} served predictions)"
        return served
    windows["current_source"] = (f"validated batches ({len(batch)} transactions scored offline; "
                                 f"{len(served)} served predictions in the prediction log)")
    return batch


def _quality(settings: Settings, champion: VersionRef, labelled: pd.DataFrame, windows: dict[str, str],
             out_dir: Path) -> QualityFinding:
    """The champion's quality metric on the labelled window, next to its validation value."""
    import pandas as pd

    from glue import features, tracking

    policy = settings.params.monitoring.quality
    label = features.LABEL_COLUMN
    window = (f"{windows['quality_start']} .. {windows['quality_end']}" if "quality_start" in windows
              else f"labels known at {windows['labels_known_at']}")
    rows, positives = len(labelled), int(labelled[label].sum()) if len(labelled) else 0
    baseline, validation = None, None
    run_id = champion.tags.get(contract.TRAIN_RUN_ID) or champion.run_id
    if run_id:
        _, _, metrics = tracking.run_data(run_id)
        baseline = metrics.get(BASELINE_METRIC[policy.metric])
        path = tracking.cached_artifact(settings, run_id, contract.VALIDATION_ARTIFACT)
        validation = pd.read_parquet(path) if path is not None else None
    if rows < policy.min_rows or positives < policy.min_positives:
        after = windows["quality_after"] or "its training"
        return QualityFinding(
            metric=policy.metric, value=None, baseline=baseline, rows=rows, positives=positives,
            window=window,
            reason=(f"{rows} labelled rows with {positives} fraud after {after}; the policy needs "
                    f"{policy.min_rows} rows and {policy.min_positives} fraud"),
        )
    from monitoring import reports

    y, scores = labelled[label].to_numpy().astype(int), labelled[PREDICTION_COLUMN].to_numpy()
    threshold = settings.params.train.decision_threshold
    metric = quality_metric(policy.metric, threshold)
    value = metric(y, scores)
    low = high = None
    if validation is not None:
        y_val = validation[label].to_numpy().astype(int)
        s_val = validation[PREDICTION_COLUMN].to_numpy()
        low, high = drop_interval((y_val, s_val), (y, scores), metric, policy.bootstrap_samples,
                                  policy.confidence)
    reports.quality_report(labelled.rename(columns={label: "target"}), "target", PREDICTION_COLUMN,
                           threshold, out_dir)
    return QualityFinding(metric=policy.metric, value=float(value), baseline=baseline, rows=rows,
                          positives=positives, window=window, drop_low=low, drop_high=high)


def quality_metric(name: str, threshold: float) -> Any:
    """metric(y, scores) for a policy metric name, computed as glue/training.py computes it."""
    from sklearn import metrics as m

    return {
        "average_precision": m.average_precision_score,
        "roc_auc": m.roc_auc_score,
        "precision": lambda y, s: m.precision_score(y, s >= threshold, zero_division=0),
        "recall": lambda y, s: m.recall_score(y, s >= threshold, zero_division=0),
    }[name]


def drop_interval(baseline: tuple[Any, Any], current: tuple[Any, Any], metric: Any, samples: int,
                  confidence: float, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of metric(baseline) - metric(current), both resampled.

    Two independent windows (validation, and the labelled days since), each with its own noise:
    resampling both is what makes "the drop is surely beyond the limit" a fair statement.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(samples):
        parts = []
        for y, s in (baseline, current):
            idx = rng.integers(0, len(y), len(y))
            if not 0 < y[idx].sum() < len(idx):  # one class only: the metric is undefined
                break
            parts.append(metric(y[idx], s[idx]))
        if len(parts) == 2:
            drops.append(parts[0] - parts[1])
    if not drops:
        return None, None
    tail = (1 - confidence) / 2
    return float(np.quantile(drops, tail)), float(np.quantile(drops, 1 - tail))


def _record(settings: Settings, result: CheckResult, *, champion: VersionRef | None,
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
    atomic.write_text(settings.monitoring_dir / METRICS_FILE, prom)  # what node_exporter reads

    run_id = _log_to_mlflow(settings, result, champion)
    seconds = time.perf_counter() - started if started is not None else 0.0
    return CheckResult(**{**result.__dict__, "run_id": run_id, "alert": alert, "seconds": seconds})


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


def _log_to_mlflow(settings: Settings, result: CheckResult, champion: VersionRef | None) -> str:
    """One run per checked day in the monitoring experiment; re-running a day reuses it."""
    import mlflow

    from glue import tracking

    params = settings.params.monitoring
    experiment_id = tracking.ensure_experiment(settings, params.experiment_name)
    day = result.day.isoformat()
    existing = mlflow.search_runs([experiment_id], filter_string=f"tags.`{contract.MONITOR_DAY}` = '{day}'",
                                  output_format="list", max_results=1)
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
    with mlflow.start_run(run_id=existing[0].info.run_id if existing else None,
                          experiment_id=None if existing else experiment_id,
                          run_name=f"check-{day}", tags=None if existing else tags) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics, model_id=champion.model_id if champion else None)
        mlflow.log_artifacts(str(result.out_dir), artifact_path=contract.MONITORING_ARTIFACT_DIR)
        run_id = run.info.run_id
    if champion is not None:
        flags = " ".join(f"{k}={tags[key]}" for k, key in (("drift", contract.MONITOR_DRIFT),
                                                            ("decay", contract.MONITOR_DECAY),
                                                            ("retrain", contract.MONITOR_RETRAIN)))
        verdict = f"{day}: {flags} (run {run_id})"
        tracking.set_version_tags(champion.name, champion.version, {contract.MONITOR_LAST_CHECK: verdict})
    return run_id

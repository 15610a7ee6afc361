"""Monitoring you can trust (issue 15 item 7): false alarms and detection delay of the real check.

Per seed x shift kind (none, spending_change, new_fraud_pattern) x volume (transactions a day),
the demo's own generator (params.yaml ``data.generator``) writes the data; the project's own
transformation step builds the feature tables, and Feast (the project's repo, applied to a scratch
registry) joins every event's point-in-time features through glue/features.py ``scoring_frame``,
as ``glue monitor`` gets them for a day it has no served predictions of. A champion of the fraud
model is trained per seed and volume the way glue/training.py trains it (its day split,
``max_train_rows`` sample, pipeline, reference sample and validation rows; no MLflow), on the
labels known at the end of the day before the first monitored day (the day `glue simulate` starts
on by default: 58). Its drift reference is its last ``reference_days`` (glue/monitor.py
``reference_window``). The generator's validated batches are its own files (the gate is not what
is measured). Then, in this process, every monitored day:

- drift: on the window glue/monitor.py would check, each column's score by the function the
  report's test runs (Evidently's stattest of the
  column's method, on the same sampled, typed and cleaned values as monitoring/reports.py), held to
  each policy's thresholds (monitoring/policy.py ``drift_thresholds``, ``drift_finding``,
  ``decide``). The full report (monitoring/reports.py ``drift_report``: Evidently's
  DataDriftPreset + ValueDrift with their HTML and JSON, ~3-6 s a day, which is why it is not run
  on every day) runs on the first quiet day and each shift's first day of ``--report-seeds``
  seeds, and its scores and verdict are compared with these (``report_checks`` in the JSON;
  ``--check-old`` does it for the OLD policy too);
- quality: glue/monitor.py ``quality_window`` (the latest labelled days the champion never saw,
  known by the end of the day) and ``measure_quality`` (the metric and the bootstrap interval of
  its drop against the champion's validation rows), then ``decide``, from the first day the
  shift's labels can be known (the shift day + the label delay) until a new_fraud_pattern run
  first finds decay (or ``--decay-days`` after the shift); the no-shift run of the same seed is
  checked on the same days.

Policies side by side: OLD is the policy as it was, the day alone against the fixed thresholds
(params.yaml's monitoring policy with ``noise_sigmas: 0``, on one day); NEW is params.yaml as it
is: the day and, while the window holds fewer than ``min_window_rows``, the days before it
(monitoring/policy.py ``window_days``, as glue/monitor.py pools them), against thresholds raised
to the reference's own noise at the window's size. The verdicts under other ``noise_sigmas`` come
from the same scores of the same windows (the second table).

The days before the shift are the same in the three shift kinds of a seed (the generator draws
them from one random stream; ``same_day_before_shift`` checks the day before the shift), so they
are checked once per seed and volume, as is the champion. A quiet day is a day before the shift,
or any day of the no-shift run. The detection delay is the first day with a drift (or decay)
verdict, counted from the shift's first day (0: that day itself); a run without one within the
days followed counts as "missed", and the median and worst are over seeds (a miss ranks last).

    uv run python benchmarks/monitoring_trust.py [--seeds 5] [--volumes 700,1700,17000]
        [--quiet-days 14] [--shift-days 14] [--decay-days 21] [--jobs 2] [--json PATH]
    # quick: --seeds 1 --volumes 700 --quiet-days 4 --shift-days 3 --decay-days 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This folder holds monitoring.py, named like the package it measures: import the helpers of this
# folder first, then drop the folder from the import path so `import monitoring` finds the project's.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure, write_json  # noqa: E402

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parent.parent
MODEL = "fraud-detector"
KINDS = ("none", "spending_change", "new_fraud_pattern")
# other noise_sigmas whose verdicts are tabulated too (from the same scores): the trade-off
SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0)


@dataclass
class Data:
    """One generated run: every event with its point-in-time features, and the labels."""

    frame: pd.DataFrame  # event id, event_timestamp, inputs, feature columns; sorted by time
    day: np.ndarray  # each row's day index (0-based from the generator's start date)
    labelled: pd.DataFrame  # the frame's labelled rows with the label and label_known_at
    columns: list[str]
    start: dt.date
    label_delay_days: float  # the shortest time from an event to its label being known


@dataclass
class Champion:
    """What monitoring finds from a champion's lineage, built as glue/training.py builds it."""

    estimator: Any
    reference: pd.DataFrame  # its last reference_days, with scores (glue/monitor.py)
    validation: pd.DataFrame  # the held-out rows with scores
    quality_after: dt.date  # its validation end: it saw nothing from then on
    metrics: dict[str, float] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--volumes", default="700,1700,17000", help="transactions a day")
    parser.add_argument("--quiet-days", type=int, default=14, help="monitored days before the shift")
    parser.add_argument("--shift-days", type=int, default=14, help="drift: monitored days from the shift")
    parser.add_argument("--decay-days", type=int, default=21,
                        help="decay: days from the shift the quality is followed (labels come 7 days late)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--report-seeds", type=int, default=1,
                        help="run the real report on the first quiet and shifted days of this many seeds")
    parser.add_argument("--check-old", action="store_true",
                        help="also run the OLD policy's own report each day and count disagreements")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="other demo: keys for the generator (as glue simulate --set)")
    parser.add_argument("--keep", type=Path, help="keep the scratch project (reports) here")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one seed and volume each)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args()
    run(args)


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    volumes = [int(v) for v in args.volumes.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    # the largest volumes first: two workers then end together
    tasks = sorted(((v, s) for v in volumes for s in range(args.seeds)), key=lambda t: (-t[0], t[1]))
    results: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(one_seed, seed, volume, kinds, args) for volume, seed in tasks]
            results = [f.result() for f in futures]
    else:
        results = [one_seed(seed, volume, kinds, args) for volume, seed in tasks]
    runs = [r for r, _ in results]
    days = [d for _, ds in results for d in ds]
    summary = summarise(days, runs, volumes, kinds, args)
    render(summary)
    render_sigmas(summary)
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s ({args.jobs} worker(s))")
    write_json(args.json, figures(summary), summary=summary, runs=runs, days=days, seconds=elapsed,
               params={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})


_WORKER: dict[str, Any] = {}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """This process's scratch project, Feast store, Evidently and policies (made once per process)."""
    if _WORKER:
        return _WORKER
    import atexit

    scratch = Path(tempfile.mkdtemp(prefix="glue-monitoring-trust-"))

    def clean() -> None:
        if args.keep:
            shutil.copytree(scratch, args.keep / f"worker-{os.getpid()}", dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)

    atexit.register(clean)
    settings, store = scratch_project(scratch / "project")
    t0 = time.perf_counter()
    from monitoring import reports

    reports.import_evidently()
    print(f"[{os.getpid()}] import evidently: {time.perf_counter() - t0:.1f} s", flush=True)
    if args.jobs > 1:  # two fits at once on two cores: one OpenMP thread each
        import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the limit applies to
        from threadpoolctl import threadpool_limits

        _WORKER["limits"] = threadpool_limits(limits=1, user_api="openmp")
    model = settings.model(MODEL)
    new = model.monitoring
    # OLD: the fixed thresholds params.yaml had before (the same policy without the noise term)
    old = new.model_copy(update={"drift": new.drift.model_copy(update={"noise_sigmas": 0.0})})
    _WORKER.update(settings=settings, store=store, model=model, old=old, new=new, scratch=scratch)
    return _WORKER


def scratch_project(root: Path) -> tuple[Any, Any]:
    """This project's configuration in `root` (no data, no stores); settings and its Feast store."""
    root.mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / "params.yaml", root / "params.yaml")
    shutil.copytree(PROJECT_DIR / "feature_repo", root / "feature_repo",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    os.environ["GLUE_PROJECT_DIR"] = str(root)
    for name in [k for k in os.environ if k.startswith(("GLUE_", "FEAST_", "MLFLOW_"))]:
        if name != "GLUE_PROJECT_DIR":
            del os.environ[name]
    from glue.adapters import feast
    from glue.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    # The generator's files are valid by construction: read as the validated batches (the gate is
    # not what is measured here).
    settings = settings.model_copy(update={"validated_dir": settings.raw_dir})
    return settings, feast.open_store(settings)


def generate(settings: Any, store: Any, model: Any, demo: dict[str, Any], since_day: int) -> Data:
    """Generate, transform, and join every event's features from day `since_day` on."""
    from glue import features, project_code
    from glue.adapters import feast

    if settings.raw_dir.exists():
        shutil.rmtree(settings.raw_dir)
    make = project_code.load_callable(settings.params.data.generator, settings.project_dir, "data.generator")
    make({**settings.params.demo, **demo}, settings.raw_dir)
    build = project_code.load_callable(settings.params.features.transform, settings.project_dir,
                                       "features.transform")
    tables = build(features.TransformInputs(features.read_events(settings), settings.raw_dir,
                                            settings.project_dir))
    contents = feast.repo_contents(settings, store)
    for name, df in tables.items():
        feast.write_source_table(settings, store, contents, name, df)
    if not getattr(store, "_glue_applied", False):
        feast.apply_repo(settings, store, contents)
        store._glue_applied = True  # noqa: SLF001 - once per scratch store
    start = dt.date.fromisoformat(str({**settings.params.demo, **demo}["start_date"]))
    since = dt.datetime.combine(start + dt.timedelta(days=since_day), dt.time(), tzinfo=dt.UTC)
    events = features.read_events(settings, since=since)
    frame, columns = features.scoring_frame(settings, model, events, store)
    labels = features.read_label_rows(settings, model, store)
    key = settings.params.data.event_id
    labels = labels[[key, features.KNOWN_AT, model.label.field]].reset_index(drop=True)
    day = ((frame[features.EVENT_TIMESTAMP].dt.floor("D")
            - pd.Timestamp(start, tz="UTC")) // pd.Timedelta(days=1)).to_numpy()
    labelled = frame.merge(labels, on=key, how="inner")
    delay = (labelled[features.KNOWN_AT] - labelled[features.EVENT_TIMESTAMP]).min() / pd.Timedelta(days=1)
    return Data(frame=frame, day=day, labelled=labelled, columns=columns, start=start,
                label_delay_days=float(delay))


def train_champion(model: Any, data: Data, first_day: int) -> Champion:
    """The champion as glue/training.py fits it, on the labels known at the start of `first_day`."""
    from glue import features, monitor, training
    from glue.contract import PREDICTION_COLUMN

    until = pd.Timestamp(data.start + dt.timedelta(days=first_day), tz="UTC")
    labelled = labelled_rows(data, model, until)
    is_train, windows = training.split_by_days(labelled, model.validation_days, model.name)
    columns, label = data.columns, model.label.field
    train_df = training.sample_rows(labelled[is_train], model.max_train_rows, model.random_state)
    valid_df = labelled[~is_train]
    estimator = training.build_pipeline(model.task, model.estimator, train_df[columns], model.random_state)
    estimator.fit(train_df[columns], train_df[label].to_numpy())
    predictions = training.predict(estimator, model.task, valid_df[columns])
    metrics = training.evaluation_metrics(model.task, valid_df[label].to_numpy(), predictions,
                                          model.decision_threshold)
    ts = features.EVENT_TIMESTAMP
    reference = training.reference_sample(train_df[[ts, *columns, label]], model.reference_rows,
                                          model.random_state)
    reference[PREDICTION_COLUMN] = training.predict(estimator, model.task, reference[columns])
    validation = valid_df[[ts, *columns, label]].assign(**{PREDICTION_COLUMN: predictions})
    return Champion(estimator=estimator,
                    reference=monitor.reference_window(reference, model.monitoring.reference_days),
                    validation=validation.reset_index(drop=True),
                    quality_after=windows.validation_end.date(),
                    metrics={**metrics, "train_rows": len(train_df), "validation_rows": len(valid_df)})


def labelled_rows(data: Data, model: Any, known_by: pd.Timestamp) -> pd.DataFrame:
    """The events whose label is known by `known_by`, with it: what training_frame(until=) joins."""
    from glue import features

    known = data.labelled[data.labelled[features.KNOWN_AT] <= known_by]
    return known.drop(columns=features.KNOWN_AT).reset_index(drop=True)


def scored(champion: Champion, model: Any, rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    from glue import training
    from glue.contract import PREDICTION_COLUMN

    out = rows.copy()
    out[PREDICTION_COLUMN] = training.predict(champion.estimator, model.task, out[columns].astype("float64"))
    return out


def overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    return {key: yaml.safe_load(value) for key, _, value in (p.partition("=") for p in pairs)}


def day_rows(data: Data, day: int) -> pd.DataFrame:
    return data.frame[data.day == day].reset_index(drop=True)


def column_scores(reference: pd.DataFrame, current: pd.DataFrame, features: list[str], policy: Any,
                  prediction: str) -> tuple[dict[str, float], list[str]]:
    """Each column's drift score as the report's test computes it (Evidently's test function on the
    same sampled, typed, cleaned values), and the categorical columns."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    from monitoring import reports

    columns = [*features, prediction]
    ref = reports.sample(reference[columns], policy.max_rows)
    cur = reports.sample(current[columns], policy.max_rows)
    categorical = reports.categorical_columns(ref, features, policy.max_categories)
    ref, cur = reports._as_types(ref, categorical), reports._as_types(cur, categorical)  # noqa: SLF001
    scores = {}
    for column in columns:
        is_cat = column in categorical
        test = policy.prediction if column == prediction else policy.test_for(column, is_cat)
        kind = ColumnType.Categorical if is_cat else ColumnType.Numerical
        a = ref[column].replace([-np.inf, np.inf], np.nan).dropna()
        b = cur[column].replace([-np.inf, np.inf], np.nan).dropna()
        scores[column] = float(get_stattest(a, b, kind, test.method)(a, b, kind, test.threshold).drift_score)
    return scores, categorical


def verdict(params: Any, scores: dict[str, float], thresholds: dict[str, float], features: list[str],
            prediction: str) -> tuple[Any, Any]:
    """The finding and decision of monitoring/policy.py for these scores held to these thresholds."""
    from monitoring.policy import decide, drift_finding

    drifted = [c for c in features if scores[c] >= thresholds[c]]
    finding = drift_finding(params.drift, drifted, len(features), {c: scores[c] for c in features},
                            scores[prediction], scores[prediction] >= thresholds[prediction], thresholds)
    return finding, decide(params, finding, None)


def one_seed(seed: int, volume: int, kinds: list[str], args: argparse.Namespace
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One seed at one volume: the champion, its quiet days, and each shift kind's days."""
    from glue import features, simulation
    from glue.contract import PREDICTION_COLUMN
    from monitoring import reports

    w = worker(args)
    settings, store, model, old, new, scratch = (w[k] for k in ("settings", "store", "model", "old", "new",
                                                                "scratch"))
    days: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    first = (simulation.FEATURE_WARMUP_DAYS + (model.monitoring.reference_days or 0)
             + model.validation_days + int(settings.params.demo["label_delay_days"]))
    shift = first + args.quiet_days
    n_days = shift + max(args.shift_days, args.decay_days)
    demo = {**overrides(args.set), "seed": seed, "transactions_per_day": volume, "days": n_days}
    base = generate(settings, store, model, {**demo, "shift_kind": "none", "shift_day": None}, 0)
    champion = train_champion(model, base, first)
    columns = base.columns
    noise = reports.reference_noise(champion.reference, columns, new.drift, prediction=PREDICTION_COLUMN,
                                    time_column=features.EVENT_TIMESTAMP)
    record: dict[str, Any] = {"seed": seed, "volume": volume, "first_day": first, "shift_day": shift,
                              "reference_rows": len(champion.reference),
                              "champion": {k: round(v, 4) for k, v in champion.metrics.items()},
                              "noise": {c: [round(n.mean, 3), round(n.sd, 3), n.days]
                                        for c, n in noise.items()},
                              "report_checks": []}
    print(f"seed {seed} {volume}/day: champion AP {champion.metrics['average_precision']:.3f} "
          f"(train {champion.metrics['train_rows']} rows), reference {len(champion.reference)} rows, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    quiet: list[dict[str, Any]] = []
    decay_until = shift + args.decay_days  # the no-shift run's decay days: as many as new_fraud_pattern's
    for day in range(first, shift):
        quiet.append(drift_day(model, old, new, champion, noise, base, day, columns))
    for kind in kinds:
        t1 = time.perf_counter()
        if kind == "none":
            data = base
        else:
            data = generate(settings, store, model, {**demo, "shift_kind": kind, "shift_day": shift},
                            champion.quality_after.toordinal() - base.start.toordinal())
            same = day_rows(data, shift - 1)[columns].equals(day_rows(base, shift - 1)[columns])
            record.setdefault("same_day_before_shift", {})[kind] = same
            if not same:
                print(f"  seed {seed} {volume}/day: the day before the shift differs from none in {kind}!",
                      flush=True)
        rows = [{**q, "kind": kind, "offset": q["day"] - shift, "quiet": True} for q in quiet]
        for day in range(shift, shift + args.shift_days):
            rows.append({**drift_day(model, old, new, champion, noise, data, day, columns), "kind": kind,
                         "offset": day - shift, "quiet": kind == "none"})
        if kind == "new_fraud_pattern":
            decay_days(model, champion, data, shift, shift + args.decay_days, rows, kind)
            found = [r["day"] for r in rows if r.get("quality") and r["decay"]]
            decay_until = found[0] + 1 if found else decay_until
        if seed < args.report_seeds:  # the real report on the first quiet day and the shift's first day
            for day in ([first] if kind == kinds[0] else []) + [shift]:
                record["report_checks"].append({"kind": kind, **report_check(
                    model, old, new, champion, noise, data, day, columns, scratch, args.check_old)})
        for row in rows:
            row.update(seed=seed, volume=volume)
        days.extend(rows)
        print(f"  seed {seed} {volume}/day {kind}: {summary_line(rows)} ({time.perf_counter() - t1:.0f} s)",
              flush=True)
    if "none" in kinds:
        rows = []
        decay_days(model, champion, base, shift, decay_until, rows, "none")
        for row in rows:
            row.update(seed=seed, volume=volume)
        days.extend(rows)
        print(f"  seed {seed} {volume}/day none: {summary_line(rows)}", flush=True)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return record, days


def drift_day(model: Any, old: Any, new: Any, champion: Champion, noise: dict[str, Any], data: Data,
              day: int, columns: list[str]) -> dict[str, Any]:
    """One day's drift verdicts: OLD on the day alone, NEW (and the other noise_sigmas) on the
    window glue/monitor.py checks (the day, and the days before it while too few rows)."""
    from glue.contract import PREDICTION_COLUMN
    from monitoring.policy import drift_thresholds, window_days

    counts = [int((data.day == day - back).sum()) for back in range(new.drift.max_window_days)]
    pooled = window_days(new.drift, counts, model.monitoring.current_days)  # glue/monitor.py _pooled
    single = scored(champion, model, day_rows(data, day), columns)
    window = single if pooled == 1 else scored(champion, model, window_rows(data, day, pooled), columns)
    row: dict[str, Any] = {"day": day, "rows": len(single), "window_days": pooled,
                           "window_rows": len(window)}
    n_ref = len(champion.reference)
    others = [(f"z{z:g}", new.model_copy(update={"drift": new.drift.model_copy(update={"noise_sigmas": z})}),
               noise) for z in SIGMAS]
    for current, policies in ((single, [("old", old, {})]), (window, [("new", new, noise), *others])):
        if len(current) < new.drift.min_current_rows:
            row |= {f"{name}_drift": False for name, _, _ in policies}
            continue
        scores, categorical = column_scores(champion.reference, current, columns, new.drift,
                                            PREDICTION_COLUMN)
        for name, params, known in policies:
            thresholds = drift_thresholds(params.drift, columns, categorical, known, n_ref, len(current),
                                          PREDICTION_COLUMN)
            finding, decision = verdict(params, scores, thresholds, columns, PREDICTION_COLUMN)
            row[f"{name}_drift"] = decision.drift
            row[f"{name}_drifted"] = len(finding.drifted_columns)
            row[f"{name}_prediction_drifted"] = finding.prediction_drifted
            if name in ("old", "new"):
                row[f"{name}_prediction_score"] = round(scores[PREDICTION_COLUMN], 4)
                row[f"{name}_max_score"] = round(max(scores[c] for c in columns), 4)
                row[f"{name}_columns"] = finding.drifted_columns
    row["checked"] = len(window) >= new.drift.min_current_rows
    return row


def window_rows(data: Data, day: int, days: int) -> pd.DataFrame:
    """The rows of `day` and the `days` - 1 days before it."""
    return data.frame[(data.day > day - days) & (data.day <= day)].reset_index(drop=True)


def decay_days(model: Any, champion: Champion, data: Data, shift: int, until: int,
               rows: list[dict[str, Any]], kind: str) -> None:
    """The quality part of the check, from the first day the shift's labels can be known to `until`.

    A new_fraud_pattern run stops at its first decay verdict; the no-shift run of the same seed is
    checked on the same days.
    """
    from glue import monitor
    from monitoring.policy import decide

    label = model.label.field
    binary = model.task == monitor.BINARY
    metric = monitor.quality_metric(model.monitoring.quality.metric or "average_precision",
                                    model.decision_threshold)
    baseline = float(metric(champion.validation[label].to_numpy().astype(int if binary else "float64"),
                            champion.validation["prediction"].to_numpy()))
    delay = int(data.label_delay_days)  # the shift day's first labels are known then
    for day in range(shift + delay, until):
        t0 = time.perf_counter()
        check_day = data.start + dt.timedelta(days=day)
        windows = monitor.Windows(current_start=check_day, current_end=check_day + dt.timedelta(days=1),
                                  quality_after=champion.quality_after,
                                  quality_days=model.monitoring.quality.window_days)
        labelled = labelled_rows(data, model, pd.Timestamp(windows.labels_known_at))
        window, window_days = monitor.quality_window(labelled, windows)
        current = scored(champion, model, window, data.columns)
        text = f"{window_days[0].date()} .. {window_days[-1].date()}" if window_days else "none"
        finding = monitor.measure_quality(model, current, champion.validation, baseline, text,
                                          after=str(champion.quality_after))
        decision = decide(model.monitoring, None, finding)
        shifted = sum(1 for d in window_days if (d.date() - data.start).days >= shift)
        rows.append({"day": day, "kind": kind, "offset": day - shift, "quality": True,
                     "decay": decision.decay, "value": finding.value, "baseline": baseline,
                     "drop_low": finding.drop_low, "drop_high": finding.drop_high,
                     "labelled_rows": finding.rows, "positives": finding.positives,
                     "shifted_label_days": shifted, "seconds": round(time.perf_counter() - t0, 2)})
        if kind == "new_fraud_pattern" and decision.decay:
            break


def report_check(model: Any, old: Any, new: Any, champion: Champion, noise: dict[str, Any], data: Data,
                 day: int, columns: list[str], scratch: Path, check_old: bool) -> dict[str, Any]:
    """The real report (monitoring/reports.py drift_report, HTML and JSON written) on one day,
    against the scores and verdicts the table is made of."""
    from glue.contract import PREDICTION_COLUMN
    from monitoring import reports
    from monitoring.policy import decide

    expected = drift_day(model, old, new, champion, noise, data, day, columns)
    out: dict[str, Any] = {"day": day, "rows": expected["rows"], "window_days": expected["window_days"]}
    for name, params in (("new", new), *((("old", old),) if check_old else ())):
        days = expected["window_days"] if name == "new" else 1
        current = scored(champion, model, window_rows(data, day, days), columns)
        t0 = time.perf_counter()
        finding, _ = reports.drift_report(champion.reference, current, columns, params.drift,
                                          scratch / "reports" / f"{name}-{day}", prediction=PREDICTION_COLUMN,
                                          noise=noise if name == "new" else {})
        out[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
        mine, _ = column_scores(champion.reference, current, columns, params.drift, PREDICTION_COLUMN)
        theirs = {**finding.scores, PREDICTION_COLUMN: finding.prediction_score}
        out[f"{name}_largest_score_difference"] = max(abs(mine[c] - theirs[c]) for c in mine)
        out[f"{name}_same_verdict"] = decide(params, finding, None).drift == expected[f"{name}_drift"]
    return out


def summary_line(rows: list[dict[str, Any]]) -> str:
    drift = [r for r in rows if r.get("checked")]
    quiet = [r for r in drift if r["quiet"]]
    after = [r for r in drift if not r["quiet"]]
    parts = [f"quiet {len(quiet)} days: alarms old {sum(r['old_drift'] for r in quiet)}, "
             f"new {sum(r['new_drift'] for r in quiet)}"]
    if after:
        parts.append(f"first drift old {first_offset(after, 'old_drift')}, "
                     f"new {first_offset(after, 'new_drift')}")
    decay = [r for r in rows if r.get("quality")]
    if decay:
        parts.append(f"decay days {sum(r['decay'] for r in decay)} of {len(decay)}, first "
                     f"{first_offset(decay, 'decay')}")
    return "; ".join(parts)


def first_offset(rows: list[dict[str, Any]], flag: str) -> int | None:
    return next((r["offset"] for r in sorted(rows, key=lambda r: r["offset"]) if r[flag]), None)


def summarise(days: list[dict[str, Any]], runs: list[dict[str, Any]], volumes: list[int], kinds: list[str],
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per shift kind and volume: quiet-day false alarms, detection delays, decay."""
    seeds = range(args.seeds)
    out = []
    for kind in kinds:
        for volume in volumes:
            mine = [d for d in days if d["kind"] == kind and d["volume"] == volume]
            drift = [d for d in mine if d.get("checked")]
            quiet = [d for d in drift if d["quiet"]]
            row: dict[str, Any] = {"kind": kind, "volume": volume, "seeds": len(seeds),
                                   "quiet_days": len(quiet),
                                   "unchecked_days": sum(1 for d in mine if d.get("checked") is False)}
            for policy in ("old", "new", *(f"z{z:g}" for z in SIGMAS)):
                alarms = sum(d[f"{policy}_drift"] for d in quiet)
                row[f"{policy}_false_alarms"] = alarms
                row[f"{policy}_false_alarm_rate"] = alarms / len(quiet) if quiet else None
                if kind != "none":
                    delays = [first_offset([d for d in drift if d["seed"] == s and not d["quiet"]],
                                           f"{policy}_drift") for s in seeds]
                    row[f"{policy}_delays"] = delays
                    row |= {f"{policy}_{k}": v for k, v in delay_stats(delays).items()}
            quality = [d for d in mine if d.get("quality")]
            if quality:
                if kind == "none":
                    row["decay_days_checked"] = len(quality)
                    row["decay_false_alarms"] = sum(d["decay"] for d in quality)
                else:
                    delays = [first_offset([d for d in quality if d["seed"] == s], "decay") for s in seeds]
                    row["decay_delays"] = delays
                    row |= {f"decay_{k}": v for k, v in delay_stats(delays).items()}
            out.append(row)
    return out


def delay_stats(delays: list[int | None]) -> dict[str, Any]:
    """Median and worst delay over seeds, a run without detection counted as the worst possible."""
    missed = sum(d is None for d in delays)
    ranked = sorted(d if d is not None else float("inf") for d in delays)
    median = statistics.median_low(ranked) if ranked else None
    worst = ranked[-1] if ranked else None
    return {"median_delay": None if median in (None, float("inf")) else median,
            "worst_delay": None if worst in (None, float("inf")) else worst,
            "not_detected": missed}


def render(summary: list[dict[str, Any]]) -> None:
    """The table of the README: false alarms and delays, OLD and NEW side by side."""
    def delay(row: dict[str, Any], policy: str) -> str:
        if f"{policy}_not_detected" not in row:
            return "-"
        return (f"{fmt(row[f'{policy}_median_delay'])} / {fmt(row[f'{policy}_worst_delay'])}"
                + (f" ({row[f'{policy}_not_detected']} missed)" if row[f"{policy}_not_detected"] else ""))

    print()
    print("| shift | tx/day | quiet days | false alarms OLD | false alarms NEW | delay OLD (median / worst) "
          "| delay NEW (median / worst) | decay |")
    print("|---|---:|---:|---:|---:|---|---|---|")
    for row in summary:
        if "decay_not_detected" in row:
            decay = f"first decay {delay(row, 'decay')}"
        elif "decay_false_alarms" in row:
            decay = f"{row['decay_false_alarms']} alarms in {row['decay_days_checked']} days"
        else:
            decay = "-"
        print(f"| {row['kind']} | {row['volume']:,} | {row['quiet_days']} | {rate(row, 'old')} | "
              f"{rate(row, 'new')} | {delay(row, 'old')} | {delay(row, 'new')} | {decay} |")


def render_sigmas(summary: list[dict[str, Any]]) -> None:
    """False alarms and worst delays under other noise_sigmas: how the chosen one trades them."""
    print()
    print("| shift | tx/day | " + " | ".join(f"noise_sigmas {z:g}" for z in SIGMAS) + " |")
    print("|---|---:|" + "---|" * len(SIGMAS))
    for row in summary:
        cells = []
        for z in SIGMAS:
            key = f"z{z:g}"
            cell = f"alarms {rate(row, key)}"
            if f"{key}_not_detected" in row:
                missed = row[f"{key}_not_detected"]
                cell += f", worst delay {fmt(row[f'{key}_worst_delay'])}"
                cell += f" ({missed} missed)" if missed else ""
            cells.append(cell)
        print(f"| {row['kind']} | {row['volume']:,} | " + " | ".join(cells) + " |")


def rate(row: dict[str, Any], policy: str) -> str:
    value = row[f"{policy}_false_alarm_rate"]
    return "-" if value is None else f"{row[f'{policy}_false_alarms']} ({value:.1%})"


def fmt(value: Any) -> str:
    return "never" if value is None else str(value)


def figures(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures run_all.py tabulates: NEW's quiet-day false-alarm rate per volume (OLD as peer)
    and NEW's worst detection delay per shift kind and volume."""
    out = []
    for row in summary:
        if row["kind"] == "none":
            out.append(figure(f"false-alarm rate, no shift, {row['volume']}/day", row["new_false_alarm_rate"],
                              "", peer="fixed thresholds", peer_value=row["old_false_alarm_rate"],
                              limit=("<=", 0.05)))
        else:
            out.append(figure(f"worst drift delay, {row['kind']}, {row['volume']}/day",
                              row["new_worst_delay"], "days", peer="fixed thresholds",
                              peer_value=row["old_worst_delay"],
                              note=f"{row['new_not_detected']} of {row['seeds']} seeds not detected"))
        if "decay_worst_delay" in row:
            out.append(figure(f"worst decay delay, {row['kind']}, {row['volume']}/day",
                              row["decay_worst_delay"], "days",
                              note=f"{row['decay_not_detected']} of {row['seeds']} seeds not detected"))
    return out


if __name__ == "__main__":
    main()

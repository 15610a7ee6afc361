"""The training stage: fit one model of the project on its Feast features, track it, register it.

One call to :func:`train` is one MLflow run and one new registered model version, aliased
``challenger``; whether it becomes ``champion`` is the gate's decision (glue/promotion.py), not
training's. A training killed half-way (after registering, before the alias) is cleaned up by the
next attempt at the same training, an Airflow task's retry or the next run on the host: its
version is deleted and its run marked KILLED, so a completed training leaves exactly one version.

The split is by time, not at random: the model's most recent ``validation_days``
labelled days are held out, because it will score *future* events and the world drifts; the gate
later scores challenger and champion on exactly that held-out window. The task (params.yaml
``models.<name>.task``) decides the estimator family, the metrics and the pictures.

The run and the model version carry one lineage record (glue/lineage.py): git commit and dirty
flag, the DVC version of the raw data, the validation result used, the Feast feature service and
refs, the training and validation windows and the params. DVC gets metrics/<model>/train.json
and the curve data under metrics/<model>/plots/.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import atomic, lineage, model_card
from glue.contract import (
    CHALLENGER,
    CHAMPION,
    DVC_DATA_PATH,
    DVC_DATA_VERSION,
    DVC_REMOTE,
    FEAST_FEATURE_SERVICE,
    FEATURE_COLUMNS,
    FEATURE_IMPORTANCE_JSON,
    FEATURE_IMPORTANCE_PNG,
    FEATURE_REFS,
    FEATURE_SERVICE,
    LABEL,
    PREDICTION_COLUMN,
    REFERENCE_ARTIFACT,
    RESIDUALS_PNG,
    TASK,
    TRAIN_ABANDONED,
    TRAIN_ATTEMPT,
    TRAIN_END,
    TRAIN_PARAMS,
    TRAIN_PID,
    TRAIN_RUN_ID,
    TRAIN_SAMPLE,
    TRAIN_START,
    TRAIN_THREADS,
    VALIDATION_ARTIFACT,
    VALIDATION_DAYS,
    VALIDATION_END,
    VALIDATION_START,
    join_tag,
)
from glue.errors import GlueError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from glue.adapters import dvc
    from glue.features import TrainingFrame
    from glue.settings import EstimatorSpec, ModelSpec, Settings

BINARY, REGRESSION = "binary_classification", "regression"


# DVC outputs (the dvc.yaml `train` stage lists these), per model.
def metrics_file(model: str) -> Path:
    """metrics/<model>/train.json, relative to the project directory."""
    return Path("metrics") / model / "train.json"


def plots_dir(model: str) -> Path:
    """metrics/<model>/plots/: the curve tables `dvc plots show` draws."""
    return Path("metrics") / model / "plots"


def model_record(model: str) -> Path:
    """model/<model>.json under data_dir: the train stage's DVC output standing for the version."""
    return Path("model") / f"{model}.json"


TIMESTAMP_COLUMN = "event_timestamp"

_PLOT_POINTS = 500  # curve rows written for DVC plots (enough for a smooth line, small in git)
_IMPORTANCE_ROWS = 10_000
_IMPORTANCE_REPEATS = 3  # x 10k rows: half a minute less per model at 1M transactions than 5


@dataclass(frozen=True)
class Windows:
    """Time ranges of the split, half-open [start, end), UTC, on whole days."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    validation_start: pd.Timestamp
    validation_end: pd.Timestamp
    validation_days: list[str]

    def tags(self) -> dict[str, str]:
        return {
            TRAIN_START: self.train_start.isoformat(),
            TRAIN_END: self.train_end.isoformat(),
            VALIDATION_START: self.validation_start.isoformat(),
            VALIDATION_END: self.validation_end.isoformat(),
            VALIDATION_DAYS: join_tag(self.validation_days),
        }


@dataclass(frozen=True)
class TrainResult:
    """One trained, logged and registered model."""

    run_id: str
    model_uri: str
    registered_model: str
    version: str
    task: str
    metrics: dict[str, float]
    windows: Windows
    seconds: float
    removed_versions: tuple[str, ...] = ()  # what a killed earlier attempt had registered

    def summary(self) -> str:
        m = self.metrics
        if self.task == BINARY:
            quality = (f"average_precision {m['average_precision']:.4f}, roc_auc {m['roc_auc']:.4f}, "
                       f"precision {m['precision_at_threshold']:.3f} / recall {m['recall_at_threshold']:.3f} "
                       f"at threshold {m['decision_threshold']:g}")
            counts = (f"{int(m['train_rows'])} rows, {int(m['train_positives'])} positive",
                      f"{int(m['validation_rows'])} rows, {int(m['validation_positives'])} positive")
        else:
            quality = f"rmse {m['rmse']:.4f}, mae {m['mae']:.4f}, r2 {m['r2']:.4f}"
            counts = (f"{int(m['train_rows'])} rows", f"{int(m['validation_rows'])} rows")
        removed = (f"; removed version {', '.join(self.removed_versions)} of a killed earlier attempt"
                   if self.removed_versions else "")
        return (
            f"trained {self.registered_model} version {self.version} (alias {CHALLENGER}), "
            f"run {self.run_id} in {self.seconds:.1f} s{removed}\n"
            f"  train {self.windows.train_start:%Y-%m-%d} .. {self.windows.train_end:%Y-%m-%d} "
            f"({counts[0]}); validation {self.windows.validation_start:%Y-%m-%d} .. "
            f"{self.windows.validation_end:%Y-%m-%d} ({counts[1]})\n  {quality}"
        )


def train(settings: Settings, model: ModelSpec, frame: TrainingFrame | None = None) -> TrainResult:
    """Fit, evaluate, log and register one model; the new version gets the ``challenger`` alias.

    Without a frame the features are read from Feast inside the MLflow run, so Feast's MLflow
    integration tags the run with the feature service, views and refs it served.
    """
    from glue.adapters import mlflow

    start = time.perf_counter()
    attempt = attempt_key()
    removed = remove_killed_attempts(settings, model, attempt)
    store = None
    data = read_data_version(settings) if frame is None else lineage.FRAME_GIVEN
    if frame is None:
        from glue.adapters import feast

        store = feast.open_store(settings)
    data_tags = lineage.data_lineage_tags(settings.project_dir, settings.validated_dir, data)

    attempt_tags = {TRAIN_ATTEMPT: attempt, TRAIN_PID: str(os.getpid())}
    with mlflow.training_run(settings, model.experiment_name, tags={**data_tags, **attempt_tags},
                             store=store) as run_id:
        sample = None
        if frame is None:
            from glue.features import training_frame

            sample = PreJoinSample(model)
            frame = training_frame(settings, model, store=store, select=sample)
        is_train, windows = split_by_days(frame.df, model.validation_days, model.name)
        columns, label = list(frame.feature_columns), frame.label_column
        train_df, valid_df = frame.df[is_train], frame.df[~is_train]
        available = sample.available if sample is not None else len(train_df)
        train_df = sample_rows(train_df, model.max_train_rows, model.random_state)
        if model.task == BINARY:
            _check_labels(train_df[label], "training", windows)
            _check_labels(valid_df[label], "validation", windows)

        threads = openmp_threads()  # histogram sums follow the thread split: part of the record
        fit_start = time.perf_counter()
        estimator = build_pipeline(model.task, model.estimator, train_df[columns], model.random_state)
        estimator, searched = fit_estimator(settings, model, estimator, train_df[columns],
                                            train_df[label].to_numpy())
        fit_seconds = time.perf_counter() - fit_start
        predictions = predict(estimator, model.task, valid_df[columns])

        y_valid = valid_df[label].to_numpy()
        metrics = evaluation_metrics(model.task, y_valid, predictions, model.decision_threshold)
        metrics.update(train_rows=len(train_df), train_rows_available=available,
                       validation_rows=len(valid_df))
        if model.task == BINARY:
            metrics.update(train_positives=int(train_df[label].sum()),
                           validation_positives=int(y_valid.sum()))
        spec = {"task": model.task, "estimator": model.estimator.model_dump(),
                "validation_days": model.validation_days, "random_state": model.random_state,
                "decision_threshold": model.decision_threshold, "max_train_rows": model.max_train_rows}
        if searched:  # what the search chose is what the model is: on the run, the version, train.json
            spec["search_best_params"] = searched["best_params"]
            metrics["search_best_score"] = searched["best_score"]
        run_tags = {
            **windows.tags(),
            TASK: model.task,
            FEATURE_SERVICE: frame.feature_service,
            FEAST_FEATURE_SERVICE: frame.feature_service,
            FEATURE_REFS: join_tag(frame.feature_refs),
            FEATURE_COLUMNS: join_tag(columns),
            LABEL: label,
            TRAIN_PARAMS: json.dumps(spec, sort_keys=True),
            TRAIN_THREADS: threads,
            TRAIN_SAMPLE: (f"uniform {len(train_df)} of {available} rows (max_train_rows)"
                           if len(train_df) < available else "all rows"),
        }
        mlflow.set_tags(run_tags)
        mlflow.log_params({**_flat_params(spec), "feature_service": frame.feature_service,
                             "n_features": len(columns)})
        datasets = mlflow.log_datasets(
            {"training": train_df[[TIMESTAMP_COLUMN, *columns, label]],
             "validation": valid_df[[TIMESTAMP_COLUMN, *columns, label]]},
            name=frame.feature_service, target=label, timestamp_column=TIMESTAMP_COLUMN,
            source=dataset_source(frame.feature_service, store.project if store is not None else "",
                                  data_tags),
        )
        model_uri, model_id = mlflow.log_sklearn_model(estimator, train_df[columns].head(5))
        mlflow.log_feature_refs(frame.feature_refs)
        # the metrics of the held-out rows, linked to the LoggedModel and to the validation set
        mlflow.log_metrics(metrics, model_id=model_id, dataset=datasets["validation"])
        mlflow.log_metrics({"fit_seconds": fit_seconds}, model_id=model_id)
        mlflow.evaluate_model(model_uri, valid_df[[*columns, label]], label,
                                "classifier" if model.task == BINARY else "regressor", model_id=model_id)

        reference = reference_sample(train_df[[TIMESTAMP_COLUMN, *columns, label]],
                                     model.reference_rows, model.random_state)
        reference[PREDICTION_COLUMN] = predict(estimator, model.task, reference[columns])
        mlflow.log_frame(reference, REFERENCE_ARTIFACT)
        validation = valid_df[[TIMESTAMP_COLUMN, *columns, label]].assign(**{PREDICTION_COLUMN: predictions})
        mlflow.log_frame(validation, VALIDATION_ARTIFACT)

        importance = feature_importance(estimator, model.task, valid_df[columns], y_valid, model.random_state)
        mlflow.log_dict(importance, FEATURE_IMPORTANCE_JSON)
        mlflow.log_figure(_importance_figure(importance, model.task), FEATURE_IMPORTANCE_PNG)
        if model.task == REGRESSION:
            mlflow.log_figure(_residuals_figure(y_valid, predictions), RESIDUALS_PNG)

        _write_dvc_outputs(settings.outputs_dir, model, metrics, y_valid, predictions)
        segments = segment_metrics(model, valid_df, y_valid, predictions)
        version = mlflow.register_model(model_uri, model.name, tags={**data_tags, **run_tags,
                                                                       TRAIN_ATTEMPT: attempt,
                                                                       TRAIN_RUN_ID: run_id})
        model_card.log_card(run_id, model_card.build_card(model, version=version, run_id=run_id,
                                                          tags={**data_tags, **run_tags}, metrics=metrics,
                                                          segments=segments))
        mlflow.set_alias(model.name, CHALLENGER, version)
        _write_model_record(settings, model.name, version, run_id, model_uri)

    return TrainResult(
        run_id=run_id,
        model_uri=model_uri,
        registered_model=model.name,
        version=version,
        task=model.task,
        metrics=metrics,
        windows=windows,
        seconds=time.perf_counter() - start,
        removed_versions=tuple(removed),
    )


def attempt_key(environ: dict[str, str] | None = None) -> str:
    """Who is training: an Airflow task instance, or this host.

    Airflow puts the task instance in its task's environment (AIRFLOW_CTX_DAG_ID, _DAG_RUN_ID,
    _TASK_ID); a retry of the task is the same attempt, so whatever a killed try registered is
    the retry's to remove. Outside Airflow (the CLI, `dvc repro`) the attempt is this host's, and
    the process id on the run tells a killed attempt from one still running.
    """
    env = os.environ if environ is None else environ
    dag, run, task = (env.get(f"AIRFLOW_CTX_{part}") for part in ("DAG_ID", "DAG_RUN_ID", "TASK_ID"))
    if dag and run and task:
        return f"airflow:{dag}/{run}/{task}"
    return f"host:{socket.gethostname()}"


def remove_killed_attempts(settings: Settings, model: ModelSpec, attempt: str) -> list[str]:
    """Delete what earlier, killed attempts at this training registered; mark their runs KILLED.

    A killed process leaves its MLflow run RUNNING, and perhaps a version registered without its
    ``challenger`` alias (or with it, and without the stage's record). Such a version never went
    through the gate; keeping it would leave two versions for one training once this attempt
    registers its own. A version serving as champion is never deleted. Returns the deleted versions.
    """
    from glue.adapters import mlflow

    mlflow.configure(settings)
    removed: list[str] = []
    for run_id, tags in mlflow.running_runs(model.experiment_name, {TRAIN_ATTEMPT: attempt}):
        if attempt.startswith("host:") and _process_alive(tags.get(TRAIN_PID, "")):
            continue  # another training on this host, running right now
        versions = mlflow.discard_run_versions(model.name, run_id, unless_alias=CHAMPION)
        mlflow.end_run(run_id, "KILLED", {TRAIN_ABANDONED: (
            f"killed before it finished; the next attempt ({attempt}, pid {os.getpid()}) removed "
            f"version(s) {', '.join(versions) or 'none'}")})
        removed += versions
    return removed


def _process_alive(pid: str) -> bool:
    """Whether the process a run names still runs on this host (an unknown id counts as alive: keep it)."""
    return not pid.isdigit() or atomic.process_running(int(pid))


_MIN_SEGMENT_ROWS = 30  # fewer rows than this: the segment's metrics are noise, reported as such


def segment_metrics(model: ModelSpec, frame: pd.DataFrame, y: np.ndarray, predictions: np.ndarray
                    ) -> dict[str, Any]:
    """The held-out metrics per value of params.yaml ``card.segment_column`` ({} when unset).

    A segment too small, or (binary) holding one class only, gets its row count and why it has no
    metrics instead of numbers that would mislead.
    """
    column = model.card.segment_column
    if column is None:
        return {}
    if column not in frame.columns:  # the card says so; a card detail does not stop a training
        return {"column": column, "segments": {}, "error": (
            f"params.yaml models.{model.name}.card.segment_column: '{column}' is not a column of the "
            f"training frame ({', '.join(map(str, frame.columns))})")}
    out: dict[str, Any] = {"column": column, "segments": {}}
    values = frame[column].astype("string").fillna("<missing>").to_numpy()
    for value in sorted(set(values)):
        rows = values == value
        n = int(rows.sum())
        entry: dict[str, Any] = {"rows": n}
        if n < _MIN_SEGMENT_ROWS:
            entry["metrics"] = f"not computed (fewer than {_MIN_SEGMENT_ROWS} rows)"
        elif model.task == BINARY and len(set(y[rows].tolist())) < 2:
            entry["metrics"] = "not computed (one class only)"
        else:
            entry["metrics"] = evaluation_metrics(model.task, y[rows], predictions[rows],
                                                  model.decision_threshold)
        out["segments"][str(value)] = entry
    return out


def openmp_threads() -> str:
    """How many OpenMP threads a fit uses now (scikit-learn's gradient boosting sums its histograms
    over them, so the same data and seed give bit-identical models only with the same count)."""
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime threadpoolctl reports
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "openmp"]
    return str(max(counts)) if counts else "unknown"


def dataset_source(feature_service: str, feast_project: str, data_tags: dict[str, str]) -> dict[str, str]:
    """The fields of the training and validation sets' MLflow source (FeastDvcDatasetSource): the
    feature service over the DVC data version, as the data tags name it."""
    return {"feature_service": feature_service, "feast_project": feast_project,
            "dvc_data_path": data_tags[DVC_DATA_PATH], "dvc_data_version": data_tags[DVC_DATA_VERSION],
            "dvc_remote": data_tags[DVC_REMOTE]}


def read_data_version(settings: Settings) -> dvc.DataVersion | str:
    """The DVC version of the data this training is about to read (the raw batches and labels,
    settings.raw_dir), made one now and pushed to the profile's DVC remote, on every path that
    trains: `dvc repro`, an Airflow task, `glue simulate`, a notebook. Before any MLflow run starts,
    so a remote that cannot take it stops the training with nothing registered.
    """
    from glue.adapters import dvc

    version = dvc.snapshot(settings.project_dir, settings.raw_dir, settings.profile, settings.dvc_remote)
    return version if version is not None else lineage.NOT_A_DVC_REPO


# The scikit-learn scorer of each gate metric (higher is better), for a search without `scoring`.
SEARCH_SCORERS = {"average_precision": "average_precision", "roc_auc": "roc_auc", "log_loss": "neg_log_loss",
                  "brier": "neg_brier_score", "rmse": "neg_root_mean_squared_error",
                  "mae": "neg_mean_absolute_error", "r2": "r2"}


def fit_estimator(settings: Settings, model: ModelSpec, estimator: Any, X: pd.DataFrame, y: np.ndarray
                  ) -> tuple[Any, dict[str, Any]]:
    """Fit the pipeline; with params.yaml `estimator.search`, choose its parameters first.

    The search is scikit-learn's GridSearchCV over time-ordered folds (TimeSeriesSplit: the rows
    are in event order, and every fold validates on days after the ones it trained on), scored by
    the gate's metric, then refit on all rows. On the ray profile the candidate fits run on the
    Ray cluster through joblib's ray backend; elsewhere one after another in this process.
    Returns the fitted pipeline and what the search found ({} without a search).
    """
    search = model.estimator.search
    if search is None:
        return estimator.fit(X, y), {}
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

    grid = {f"model__{name}": values for name, values in search.grid.items()}
    scoring = search.scoring or SEARCH_SCORERS[model.gate.metric or "average_precision"]
    cv = GridSearchCV(estimator, grid, scoring=scoring, cv=TimeSeriesSplit(n_splits=search.cv), refit=True,
                      n_jobs=-1 if settings.ray is not None else None, error_score="raise")
    try:
        if settings.ray is not None:
            from glue.adapters import ray

            with ray.joblib_backend(settings):
                cv.fit(X, y)
        else:
            cv.fit(X, y)
    except ValueError as exc:
        raise GlueError(f"params.yaml models.{model.name}.estimator.search: {exc}") from None
    best = {name.removeprefix("model__"): value for name, value in cv.best_params_.items()}
    return cv.best_estimator_, {"best_params": best, "best_score": float(cv.best_score_)}


def predict(estimator: Any, task: str, X: pd.DataFrame) -> np.ndarray:
    """What a model of the task answers: P(positive) for binary classification, the value for regression."""
    if task == BINARY:
        return estimator.predict_proba(X)[:, 1]
    return estimator.predict(X)


def split_by_days(df: pd.DataFrame, validation_days: int, model: str | None = None
                  ) -> tuple[np.ndarray, Windows]:
    """Mask of training rows (True) vs the last `validation_days` labelled days (False).

    Whole UTC days, so the held-out window is the same set of rows whichever way the frame was
    built, and the gate can rebuild it from the two timestamps on the run. `model` names the
    model in the error message (its params.yaml key).
    """
    import pandas as pd

    days = df[TIMESTAMP_COLUMN].dt.tz_convert("UTC").dt.floor("D")
    distinct = days.drop_duplicates().sort_values().reset_index(drop=True)
    if len(distinct) <= validation_days:
        key = f"params.yaml models.{model}.validation_days" if model else "validation_days"
        raise GlueError(
            f"the training frame has {len(distinct)} labelled day(s); "
            f"{key}={validation_days} needs at least {validation_days + 1}"
        )
    validation_start = distinct.iloc[-validation_days]
    one_day = pd.Timedelta(days=1)
    windows = Windows(
        train_start=distinct.iloc[0],
        train_end=validation_start,
        validation_start=validation_start,
        validation_end=distinct.iloc[-1] + one_day,
        validation_days=[f"{d:%Y-%m-%d}" for d in distinct.iloc[-validation_days:]],
    )
    return (days < validation_start).to_numpy(), windows


class PreJoinSample:
    """``max_train_rows`` applied to the labelled events before Feast joins their features.

    Why before: the point-in-time join of every labelled event was the training stage's peak
    (19.8 GB at 10 million transactions) while the fit used a sample of them. The sample draws the
    same way as :func:`sample_rows` (uniform, seeded, in the rows' order) among the training days
    only; the held-out validation days are kept whole, so the gate's window is unchanged.
    ``available`` keeps how many training rows there were (the run's train_rows_available).
    """

    def __init__(self, model: ModelSpec) -> None:
        self.model = model
        self.available: int | None = None

    def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        is_train, _ = split_by_days(rows, self.model.validation_days, self.model.name)
        self.available = int(is_train.sum())
        limit = self.model.max_train_rows
        if limit is None or self.available <= limit:
            return rows
        positions = np.flatnonzero(is_train)
        chosen = sample_rows(pd.Series(positions), limit, self.model.random_state).to_numpy()
        keep = ~is_train
        keep[chosen] = True
        return rows[keep]


def sample_rows(df: pd.DataFrame, rows: int | None, random_state: int) -> pd.DataFrame:
    """At most `rows` rows drawn uniformly at random, in their original order (all if fewer).

    Why uniform: it keeps the label's base rate and the time mix of the training window, so a
    binary model's scores stay calibrated without re-weighting. Gradient boosting's fit time grows
    with the rows while its quality levels off long before a million of them (measured on the
    demo at 1M transactions: README "Scale").
    """
    if rows is None or len(df) <= rows:
        return df
    return df.sample(n=rows, random_state=random_state).sort_index()


def reference_sample(df: pd.DataFrame, rows: int, random_state: int) -> pd.DataFrame:
    """A uniform sample of at most `rows` training rows, in time order (all of them if fewer)."""
    if len(df) <= rows:
        return df.reset_index(drop=True)
    return df.sample(n=rows, random_state=random_state).sort_index().reset_index(drop=True)


def window_mask(df: pd.DataFrame, start: str, end: str) -> np.ndarray:
    """Rows of `df` whose event time is in [start, end) (ISO timestamps, as tagged on the run)."""
    import pandas as pd

    ts = df[TIMESTAMP_COLUMN]
    return ((ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))).to_numpy()


def build_pipeline(task: str, spec: EstimatorSpec, X: pd.DataFrame, random_state: int) -> Any:
    """Preprocessing and estimator in one scikit-learn Pipeline, so serving needs nothing else.

    Numbers are median-imputed (and scaled for the linear models); strings, categories and booleans
    are one-hot encoded, ignoring categories unseen in training (a new category must not crash
    scoring).
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype
    from sklearn import ensemble, linear_model
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if is_numeric_dtype(X[c]) and not is_bool_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    linear = spec.type in ("logistic_regression", "ridge", "linear_regression")
    numeric_steps = [SimpleImputer(strategy="median")] + ([StandardScaler()] if linear else [])
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        verbose_feature_names_out=False,
    )
    estimators = {
        (BINARY, "hist_gradient_boosting"): ensemble.HistGradientBoostingClassifier,
        (BINARY, "random_forest"): ensemble.RandomForestClassifier,
        (BINARY, "logistic_regression"): linear_model.LogisticRegression,
        (REGRESSION, "hist_gradient_boosting"): ensemble.HistGradientBoostingRegressor,
        (REGRESSION, "random_forest"): ensemble.RandomForestRegressor,
        (REGRESSION, "ridge"): linear_model.Ridge,
        (REGRESSION, "linear_regression"): linear_model.LinearRegression,
    }
    kwargs = dict(spec.params)
    if spec.type != "linear_regression":
        kwargs.setdefault("random_state", random_state)
    if spec.type == "logistic_regression":
        kwargs.setdefault("max_iter", 1000)
    try:
        estimator = estimators[(task, spec.type)](**kwargs)
    except (KeyError, TypeError) as exc:
        raise GlueError(f"params.yaml estimator: {spec.type} with params {spec.params} is not valid for "
                        f"task {task}: {exc}") from None
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def evaluation_metrics(task: str, y: np.ndarray, predictions: np.ndarray, threshold: float | None
                       ) -> dict[str, float]:
    """The task's metrics of predictions against labels (what train.json and the run record)."""
    if task == BINARY:
        return classification_metrics(y, predictions, threshold if threshold is not None else 0.5)
    return regression_metrics(y, predictions)


def regression_metrics(y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Error and fit of predicted values against the true ones."""
    import numpy as np
    from sklearn import metrics as m

    return {
        "rmse": float(np.sqrt(m.mean_squared_error(y, predictions))),
        "mae": float(m.mean_absolute_error(y, predictions)),
        "r2": float(m.r2_score(y, predictions)),
        "mean_label": float(np.mean(y)),
        "mean_prediction": float(np.mean(predictions)),
    }


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, thresholded and probabilistic quality of scores against 0/1 labels."""
    import numpy as np
    from sklearn import metrics as m

    flagged = scores >= threshold
    return {
        "roc_auc": float(m.roc_auc_score(y, scores)),
        "average_precision": float(m.average_precision_score(y, scores)),
        "precision_at_threshold": float(m.precision_score(y, flagged, zero_division=0)),
        "recall_at_threshold": float(m.recall_score(y, flagged, zero_division=0)),
        "f1_at_threshold": float(m.f1_score(y, flagged, zero_division=0)),
        "log_loss": float(m.log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier_score": float(m.brier_score_loss(y, scores)),
        "flagged_rate": float(flagged.mean()),
        "decision_threshold": float(threshold),
    }


def feature_importance(estimator: Any, task: str, X: pd.DataFrame, y: np.ndarray, random_state: int
                       ) -> dict[str, dict[str, float]]:
    """Permutation importance per input column (drop in average precision, or rise in RMSE),
    most important first.

    Permutation rather than model-native importance: it works for every model type and speaks in
    the input columns a person knows, not in one-hot encoded pieces.
    """
    import numpy as np
    from sklearn.inspection import permutation_importance

    if len(X) > _IMPORTANCE_ROWS:
        rows = np.random.default_rng(random_state).choice(len(X), _IMPORTANCE_ROWS, replace=False)
        X, y = X.iloc[rows], y[rows]
    scoring = "average_precision" if task == BINARY else "neg_root_mean_squared_error"
    result = permutation_importance(estimator, X, y, scoring=scoring,
                                    n_repeats=_IMPORTANCE_REPEATS, random_state=random_state)
    order = np.argsort(-result.importances_mean)
    return {
        str(X.columns[i]): {"mean": float(result.importances_mean[i]),
                            "std": float(result.importances_std[i])}
        for i in order
    }


def _flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_labels(y: pd.Series, part: str, windows: Windows) -> None:
    if y.nunique() < 2:
        raise GlueError(
            f"the {part} part of the training frame (validation window "
            f"{windows.validation_start:%Y-%m-%d} .. {windows.validation_end:%Y-%m-%d}) has only "
            f"label value(s) {sorted(y.unique().tolist())}; both 0 and 1 are needed "
            "(more labelled days, or a different validation_days of the model in params.yaml)"
        )


def _importance_figure(importance: dict[str, dict[str, float]], task: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = list(importance)[::-1]
    fig = Figure(figsize=(7, 0.35 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(names, [importance[n]["mean"] for n in names], xerr=[importance[n]["std"] for n in names])
    what = "drop in average precision" if task == BINARY else "rise in RMSE"
    ax.set_xlabel(f"{what} when the column is shuffled")
    ax.set_title("Permutation feature importance (validation window)")
    fig.tight_layout()
    return fig


def _residuals_figure(y: np.ndarray, predictions: np.ndarray) -> Any:
    """Predicted against actual, and residuals against predicted: what a regression gets wrong."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    left, right = fig.subplots(1, 2)
    left.scatter(y, predictions, s=4, alpha=0.3)
    low, high = float(min(y.min(), predictions.min())), float(max(y.max(), predictions.max()))
    left.plot([low, high], [low, high], color="black", linewidth=1)
    left.set_xlabel("actual")
    left.set_ylabel("predicted")
    left.set_title("Predicted vs actual (validation window)")
    right.scatter(predictions, y - predictions, s=4, alpha=0.3)
    right.axhline(0.0, color="black", linewidth=1)
    right.set_xlabel("predicted")
    right.set_ylabel("actual - predicted")
    right.set_title("Residuals")
    fig.tight_layout()
    return fig


def _write_dvc_outputs(project_dir: Path, model: ModelSpec, metrics: dict[str, float], y: np.ndarray,
                       predictions: np.ndarray) -> None:
    """metrics/<model>/train.json and the curve tables that `dvc metrics` and `dvc plots` read:
    ROC and precision-recall for a classifier, predicted-vs-actual and residuals for a regression."""
    import numpy as np
    import pandas as pd

    if model.task == BINARY:
        from sklearn.metrics import precision_recall_curve, roc_curve

        fpr, tpr, _ = roc_curve(y, predictions)
        precision, recall, _ = precision_recall_curve(y, predictions)
        curves = {"roc_curve.csv": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
                  "pr_curve.csv": pd.DataFrame({"recall": recall, "precision": precision})}
    else:
        order = np.argsort(predictions, kind="stable")
        curves = {"predicted_vs_actual.csv": pd.DataFrame({"actual": y[order],
                                                           "predicted": predictions[order]}),
                  "residuals.csv": pd.DataFrame({"predicted": predictions[order],
                                                 "residual": (y - predictions)[order]})}
    folder = project_dir / plots_dir(model.name)
    for name, table in curves.items():
        if len(table) > _PLOT_POINTS:
            table = table.iloc[np.unique(np.linspace(0, len(table) - 1, _PLOT_POINTS).astype(int))]
        atomic.write_text(folder / name, table.round(6).to_csv(index=False))
    atomic.write_json(project_dir / metrics_file(model.name), metrics, indent=2, sort_keys=True)


def _write_model_record(settings: Settings, name: str, version: str, run_id: str, model_uri: str) -> None:
    """data/model/<model>.json: the stage's DVC output standing for the registered model.

    The model itself lives in MLflow, outside git and DVC. Without an output of its own, a fresh
    clone holding dvc.lock and metrics/ would find the train stage up to date and skip it,
    leaving that clone's registry empty; this file is cached by DVC (not in git), so there it is
    missing and the stage runs.
    """
    record = {"registered_model": name, "version": version, "run_id": run_id, "model_uri": model_uri,
              "tracking_uri": settings.mlflow_tracking_uri}
    atomic.write_json(settings.data_dir / model_record(name), record, indent=2, sort_keys=True)

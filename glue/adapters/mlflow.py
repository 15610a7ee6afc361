"""The MLflow adapter: runs, logged models, evaluation, registry versions, aliases and tags.

Every MLflow call of the glue goes through this module (the run-context plugin lives in
mlflow_plugins/), so an MLflow API change touches one file. Functions take and return plain Python
values (ids, dicts, :class:`VersionRef`), never MLflow entities, so training and promotion read as
plain logic. Where Feast's MLflow integration fits (``store.mlflow``, enabled by the ``mlflow:``
block of feature_store.yaml) it is used: a training run started through it carries Feast's project
tag, and feature retrievals made inside it tag the run with the feature service, views and refs.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glue.contract import FEAST_FEATURES_FILE, MODEL_ARTIFACT, MODEL_SHA256
from glue.settings import Settings

EVALUATE_PREFIX = "evaluate_"  # mlflow.evaluate's metrics, apart from the ones glue computes itself

_PARAM_MAX = 500  # MLflow's limit on a param value
_TAG_MAX = 5000  # ... and on a tag value


@dataclass(frozen=True)
class VersionRef:
    """One registered model version, as the gate needs it."""

    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    model_id: str | None = None  # MLflow 3's logged model behind the version

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def configure(settings: Settings) -> None:
    """Point MLflow (and Feast's MLflow integration, which reads the env) at the profile's stores."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    os.environ["MLFLOW_REGISTRY_URI"] = settings.mlflow_registry_uri
    if settings.profile == "local":
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)


def ensure_experiment(settings: Settings, name: str) -> str:
    """The experiment's id, created on first use; locally its artifacts go to mlflow_artifacts_dir."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_registry_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if settings.profile == "local":  # prod: the tracking server proxies artifacts to its store
        location = (settings.mlflow_artifacts_dir / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process: use theirs
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def training_run(
    settings: Settings,
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    store: Any = None,
) -> Iterator[str]:
    """Start one MLflow run (through Feast's integration when the store has it); yields its id.

    The run ends FAILED if the body raises, so a crashed training is visible as such in the UI.
    """
    import mlflow

    configure(settings)
    experiment_id = ensure_experiment(settings, experiment)
    feast_mlflow = getattr(store, "mlflow", None) if store is not None else None
    if feast_mlflow is not None:
        context = feast_mlflow.start_run(run_name=run_name, tags=dict(tags or {}),
                                         experiment_id=experiment_id)
    else:
        context = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}))
    with context as run:
        yield run.info.run_id


def log_params(params: Mapping[str, Any]) -> None:
    """Log params of the active run (nested dicts flattened to dotted keys, long values cut)."""
    import mlflow

    flat = {k: _cut(str(v), _PARAM_MAX) for k, v in _flatten(params).items()}
    mlflow.log_params(flat)


def log_metrics(metrics: Mapping[str, float], model_id: str | None = None, dataset: Any = None) -> None:
    """Log metrics of the active run, linked to the logged model when its id is given and to the
    dataset they were measured on (the LoggedModel's page then shows them per dataset)."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=model_id, dataset=dataset)


def set_tags(tags: Mapping[str, str]) -> None:
    """Tag the active run."""
    import mlflow

    mlflow.set_tags({k: _cut(str(v), _TAG_MAX) for k, v in tags.items()})


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Copy one local file into the active run's artifacts."""
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Save a matplotlib figure as a run artifact (a picture a person can look at in the UI)."""
    import mlflow

    mlflow.log_figure(figure, artifact_file)


def log_dict(data: Mapping[str, Any] | list, artifact_file: str) -> None:
    """Save JSON-serialisable data as a run artifact."""
    import mlflow

    mlflow.log_dict(data, artifact_file)


def log_frame(df: Any, artifact_file: str) -> None:
    """Save a DataFrame as a Parquet artifact of the active run (e.g. the drift reference)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        df.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent) or None)


def download_artifact(run_id: str, artifact_path: str, dst_dir: Path) -> Path:
    """Fetch one artifact of a run into dst_dir (works for local stores and the proxied server)."""
    import mlflow

    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                    dst_path=str(dst_dir)))


def log_run_dict(run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
    """Write a JSON artifact to a run, active or finished (replacing one of the same name)."""
    from mlflow import MlflowClient

    MlflowClient().log_dict(run_id, dict(data), artifact_file)


def log_run_text(run_id: str, text: str, artifact_file: str) -> None:
    """Write a text artifact to a run, active or finished (replacing one of the same name)."""
    from mlflow import MlflowClient

    MlflowClient().log_text(run_id, text, artifact_file)


def read_run_json(run_id: str, artifact_file: str) -> dict[str, Any] | None:
    """A JSON artifact of a run as it is now (not cached: it may have been replaced), or None."""
    with tempfile.TemporaryDirectory(prefix="glue-artifact-") as tmp:
        try:
            path = download_artifact(run_id, artifact_file, Path(tmp))
        except Exception:  # MLflow raises its own and OSError subclasses for a missing artifact
            return None
        return json.loads(path.read_text())


def cached_artifact(settings: Settings, run_id: str, artifact_path: str) -> Path | None:
    """A run's artifact, downloaded once under the state dir (a run's artifacts never change).

    None when the run has no such artifact. Shared by the gate and monitoring, which read the
    drift reference and the validation rows of the same runs.
    """
    cache = settings.state_dir / "artifacts" / run_id
    path = cache / artifact_path
    if path.is_file():
        return path
    try:
        return download_artifact(run_id, artifact_path, cache)
    except Exception:  # MLflow raises its own and OSError subclasses for a missing artifact
        return None


def log_datasets(frames: Mapping[str, Any], *, name: str, target: str, source: dict[str, str],
                 timestamp_column: str) -> dict[str, Any]:
    """Record the training and validation tables as run inputs (digest, schema, row count), each
    with a source naming its Feast feature service and DVC data version (`source`, the fields of
    mlflow_plugins.dataset_source.FeastDvcDatasetSource but the window, which is each frame's own
    event-time range). Returns the logged datasets by context, for metrics to link to them.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import _dataset_source_registry

    from mlflow_plugins.dataset_source import FeastDvcDatasetSource

    if FeastDvcDatasetSource not in _dataset_source_registry.sources:  # entry point skipped (import order)
        _dataset_source_registry.register(FeastDvcDatasetSource)
    logged = {}
    for context, df in frames.items():
        times = df[timestamp_column] if timestamp_column in df.columns and len(df) else None
        window = ({"window_start": times.min().isoformat(), "window_end": times.max().isoformat()}
                  if times is not None else {})
        dataset = mlflow.data.from_pandas(df, source=FeastDvcDatasetSource(**source, **window),
                                          targets=target, name=f"{name}:{context}")
        # MLflow infers the schema's `required` flags with a Python loop over every value
        # (26 s for 700k rows x 16 columns); the same schema, column-wise:
        dataset.__dict__["schema"] = _schema_of(df)
        mlflow.log_input(dataset, context=context)
        logged[context] = dataset
    return logged


def _schema_of(df: Any) -> Any:
    """The schema `mlflow.data.from_pandas` would infer: each column's type, required if no value
    is missing."""
    from mlflow.types import ColSpec, Schema
    from mlflow.types.utils import _infer_pandas_column

    return Schema([ColSpec(type=_infer_pandas_column(df[c]), name=c, required=not bool(df[c].isna().any()))
                   for c in df.columns])


def log_feature_refs(feature_refs: list[str]) -> None:
    """Write feast_features.json, the artifact Feast's model resolver checks a model against.

    Feast's ``store.mlflow.log_model`` writes it only from the run's ``feast.feature_refs`` tag
    (set only when features were retrieved inside the run), and it passes ``artifact_path``
    positionally, which MLflow 3 deprecates and which hides the ModelInfo we need; so the model is
    logged with MLflow directly and this file is written here, in Feast's format.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FEAST_FEATURES_FILE
        path.write_text(json.dumps(list(feature_refs)))
        mlflow.log_artifact(str(path))


def log_sklearn_model(model: Any, input_example: Any, *, name: str = MODEL_ARTIFACT) -> tuple[str, str]:
    """Log a fitted scikit-learn model with its signature; returns (model_uri, model_id).

    A classifier's pyfunc flavour predicts with ``predict_proba`` (columns: P(0), P(1)), since every
    consumer of a classifier (serving, batch scoring, the gate) needs scores, not labels cut at 0.5;
    a regressor's with ``predict``. Integer inputs are declared as doubles: an online feature may be
    missing (NaN), and MLflow accepts ints for a double column but not NaN for a long one.
    """
    import mlflow
    from mlflow.models import infer_signature

    ints = input_example.select_dtypes("integer").columns
    input_example = input_example.astype(dict.fromkeys(ints, "float64"))

    method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    signature = infer_signature(input_example, getattr(model, method)(input_example))
    info = mlflow.sklearn.log_model(
        sk_model=model,
        name=name,
        signature=signature,
        input_example=input_example,
        pyfunc_predict_fn=method,
        serialization_format="cloudpickle",
    )
    return info.model_uri, info.model_id


def evaluate_model(model_uri: str, data: Any, label_column: str, model_type: str,
                   model_id: str | None = None) -> dict[str, float]:
    """MLflow's built-in evaluation on held-out data, logged to the active run.

    `model_type` "classifier" gives the standard metrics and the pictures (ROC, precision-recall,
    lift and calibration curves, confusion matrix), "regressor" the error metrics; no plotting code
    of ours. SHAP is off: slow, and optional.
    """
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    config = ({"pos_label": 1, "label_list": [0, 1], "metric_prefix": EVALUATE_PREFIX}
              if model_type == "classifier" else {"metric_prefix": EVALUATE_PREFIX})
    with warnings.catch_warnings():  # schema hints about int columns: the signature has doubles
        warnings.simplefilter("ignore", UserWarning)
        result = mlflow.models.evaluate(
            model=model_uri,
            data=data,
            targets=label_column,
            model_type=model_type,
            evaluators=[model_type],  # MLflow 3's ClassifierEvaluator / RegressorEvaluator
            evaluator_config={model_type: config},
            model_id=model_id,
        )
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}


def log_check_run(experiment_id: str, *, run_name: str, match: Mapping[str, str], tags: Mapping[str, str],
                  metrics: Mapping[str, float], artifacts: Path, artifact_path: str,
                  model_id: str | None = None) -> str:
    """Log one check (tags, metrics, a folder of reports) to the run whose tags equal `match`,
    creating it if there is none: re-checking the same day reuses its run. Returns the run id."""
    import mlflow

    where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in match.items())
    existing = mlflow.search_runs([experiment_id], output_format="list", max_results=1, filter_string=where)
    with mlflow.start_run(run_id=existing[0].info.run_id if existing else None,
                          experiment_id=None if existing else experiment_id,
                          run_name=run_name, tags=None if existing else dict(tags)) as run:
        mlflow.set_tags(dict(tags))
        mlflow.log_metrics(dict(metrics), model_id=model_id)
        mlflow.log_artifacts(str(artifacts), artifact_path=artifact_path)
        return run.info.run_id


def run_artifacts(run_id: str, path: str | None = None) -> list[str]:
    """Paths of the artifacts of a run (one level, under `path`)."""
    from mlflow import MlflowClient

    return [f.path for f in MlflowClient().list_artifacts(run_id, path)]


def run_data(run_id: str) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """(tags, params, metrics) of a run."""
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    return dict(run.data.tags), dict(run.data.params), dict(run.data.metrics)


def register_model(model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    """Create a registered model version with its lineage tags in the same call; returns it.

    Tags go in with the version (not after it), so a crash cannot leave a version without its
    lineage record, nor without the SHA-256 of its files (``glue.model_sha256``) that every load
    checks. MLflow 3 links the version to the logged model and its training run.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        digest = model_digest(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)))
    version = mlflow.register_model(
        model_uri, name, await_registration_for=60,
        tags={**{k: _cut(str(v), _TAG_MAX) for k, v in tags.items()}, MODEL_SHA256: digest},
    )
    return str(version.version)


def model_digest(folder: Path) -> str:
    """SHA-256 over a model's files: each relative path and its bytes, in path order.

    Not the ``registered_model_meta`` file MLflow writes into a download through the registry
    (the model's name and version, which the logged model does not have yet at registration).
    """
    import hashlib

    from mlflow.store.artifact.models_artifact_repo import REGISTERED_MODEL_META_FILE_NAME

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.name != REGISTERED_MODEL_META_FILE_NAME):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def running_runs(experiment: str, tags: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(id, tags) of the experiment's runs still marked RUNNING that carry every tag given.

    A process killed mid-run never ends its run: it stays RUNNING, which is how the next attempt
    finds what a killed one left behind (glue.training.train).
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'",
                              max_results=1000)
    return [(run.info.run_id, dict(run.data.tags)) for run in runs
            if all(run.data.tags.get(k) == v for k, v in tags.items())]


def discard_run_versions(name: str, run_id: str, *, unless_alias: str) -> list[str]:
    """Delete the versions of `name` registered from run `run_id`, except one holding `unless_alias`.

    For a killed training attempt only: its version never reached the gate, and a version a
    registry alias serves is never deleted. Deleting a version also drops its other aliases.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    deleted = []
    for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if unless_alias in (mv.aliases or []):
            continue
        client.delete_model_version(name, mv.version)
        deleted.append(str(mv.version))
    return deleted


def end_run(run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
    """Mark a run ended (KILLED for a killed attempt's), with tags saying why."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, _cut(str(value), _TAG_MAX))
    client.set_terminated(run_id, status)


def get_alias(name: str, alias: str) -> VersionRef | None:
    """The version an alias points at, or None if the model or the alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _ref(mv)


def get_version(name: str, version: str) -> VersionRef:
    """One registered model version."""
    from mlflow import MlflowClient

    return _ref(MlflowClient().get_model_version(name, version))


def find_version(name: str, version: str) -> VersionRef | None:
    """One registered model version, or None if this registry does not hold it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return _ref(MlflowClient().get_model_version(name, version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def resolve_model_uri(uri: str) -> VersionRef:
    """The registered version a ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` URI names;
    a clear error for anything else or for a version the registry does not hold."""
    from glue.errors import GlueError

    rest = uri.removeprefix("models:/")
    name, alias, version = "", "", ""
    if rest != uri and "@" in rest:
        name, alias = rest.split("@", 1)
    elif rest != uri:
        name, _, version = rest.rpartition("/")
    if not name or not (alias or version.isdigit()):
        raise GlueError(f"{uri}: not a registered model URI (models:/<name>@<alias> or "
                        "models:/<name>/<version>)")
    ref = get_alias(name, alias) if alias else find_version(name, version)
    if ref is None:
        raise GlueError(f"{uri}: the registry holds no such model version")
    return ref


def version_aliases(name: str, version: str) -> list[str]:
    """The aliases pointing at one version (champion, challenger, ...)."""
    from mlflow import MlflowClient

    return sorted(MlflowClient().get_model_version(name, version).aliases or [])


def all_versions() -> list[VersionRef]:
    """Every version of every registered model of the registry, newest first per model."""
    from mlflow import MlflowClient

    client = MlflowClient()
    refs = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        refs += [_ref(v) for v in sorted(versions, key=lambda v: -int(v.version))]
    return refs


def alias_in(store_uri: str, name: str, alias: str) -> VersionRef:
    """The version an alias points at in another store (a scratch registry, not the profile's)."""
    from mlflow import MlflowClient

    return _ref(MlflowClient(store_uri, store_uri).get_model_version_by_alias(name, alias))


def run_metrics_in(store_uri: str, run_id: str) -> dict[str, float]:
    """The metrics of a run of another store."""
    from mlflow import MlflowClient

    return dict(MlflowClient(store_uri, store_uri).get_run(run_id).data.metrics)


def load_sklearn_model_from(store_uri: str, uri: str) -> Any:
    """Load a model from another store, leaving this process's tracking and registry URIs as they were."""
    import mlflow

    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        mlflow.set_tracking_uri(store_uri)
        mlflow.set_registry_uri(store_uri)
        return mlflow.sklearn.load_model(uri)
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])


def set_alias(name: str, alias: str, version: str) -> None:
    """Point an alias at a version: one registry call, the commit point of a promotion."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, version)


def set_version_tags(name: str, version: str, tags: Mapping[str, str]) -> None:
    """Add tags to a registered model version (the gate's verdict, the reason, the numbers)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, _cut(str(value), _TAG_MAX))


def load_sklearn_model(uri: str) -> Any:
    """Load a registered scikit-learn model (``models:/<name>/<version>``) after checking its files.

    Models are loaded from the registry only, and only if their files still have the SHA-256
    recorded when the version was registered: a model swapped or corrupted in the artifact store
    is refused (serving keeps the version it has; the gate and batch scoring stop with the reason).
    A version registered before glue recorded checksums loads with a warning.
    """
    import mlflow

    from glue.errors import GlueError

    ref = resolve_model_uri(uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(ref.uri, dst_path=tmp))
        expected, actual = ref.tags.get(MODEL_SHA256), model_digest(local)
        if expected is None:
            warnings.warn(f"{uri}: no {MODEL_SHA256} tag (registered before checksums); loaded unchecked",
                          stacklevel=2)
        elif actual != expected:
            raise GlueError(
                f"{uri}: the model's files in the artifact store ({ref.source}) do not match the "
                f"checksum recorded at registration ({MODEL_SHA256} {expected[:16]}..., now "
                f"{actual[:16]}...); refusing to load a model changed after it was registered")
        return mlflow.sklearn.load_model(str(local))


def _ref(mv: Any) -> VersionRef:
    return VersionRef(name=mv.name, version=str(mv.version), run_id=mv.run_id, source=mv.source,
                      tags=dict(mv.tags or {}), model_id=getattr(mv, "model_id", None))


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."

"""One typed settings object for every stage, CLI command, DVC stage and Airflow task.

Why one object: the `local` and `prod` profiles differ only in where things live (files vs.
services), so every path and URI is decided here, once. Values come from, in order of precedence:
``GLUE_*`` environment variables, then the profile's defaults. Tunables (thresholds, model
parameters, the data schema) come from ``params.yaml`` so that DVC tracks them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from glue.errors import SettingsError
from monitoring.policy import MonitoringParams

PROFILES = ("local", "prod", "ray")
Profile = Literal["local", "prod", "ray"]
# Each profile's Feast configuration, relative to the feature repo: the same feature definitions,
# only the stores differ (ray: prod's registry and online store, Feast's Ray offline store and engine).
FEAST_YAMLS: dict[str, tuple[str, ...]] = {
    "local": ("feature_store.yaml",),
    "prod": ("prod", "feature_store.yaml"),
    "ray": ("ray", "feature_store.yaml"),
}

PARAMS_FILE = "params.yaml"


class ColumnRule(BaseModel):
    """What the validation gate demands of one column."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["string", "int", "float", "bool", "datetime"]
    nullable: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None


class ValidationParams(BaseModel):
    """The raw-batch schema checked by Great Expectations (see glue/validation.py)."""

    model_config = ConfigDict(extra="forbid")

    timestamp_column: str = "event_timestamp"
    min_rows: int = 1
    max_rows: int = 10_000_000
    max_future_seconds: int = 300
    allow_extra_columns: bool = False
    columns: dict[str, ColumnRule]


class DataParams(BaseModel):
    """The project's raw data: which batches the gate validates, and who makes demo data."""

    model_config = ConfigDict(extra="forbid")

    # data/raw/<events>/: one parquet (or CSV) batch per day of the events the models score
    events: str = "events"
    # the column naming one event: labels keyed by it are joined to the events (for the entity
    # keys and request fields a feature service needs that the labels do not carry)
    event_id: str | None = None
    # `module:function` or `path/to/file.py:function` (relative to the project): `glue demo-data`
    # calls it with the `demo:` section and data/raw; None: the project brings its own batches
    generator: str | None = None


class FeaturesParams(BaseModel):
    """The feature stage (see glue/features.py): the project's own transformation step."""

    model_config = ConfigDict(extra="forbid")

    # `module:function` or `path/to/file.py:function`: raw batches -> the tables the feature
    # views read ({Feast data source name: DataFrame}); None: the sources are filled elsewhere
    transform: str | None = None


Task = Literal["binary_classification", "regression"]
Direction = Literal["max", "min"]

# The gate's metrics per task and which way is better; floors are bounds in that direction.
TASK_METRICS: dict[str, dict[str, Direction]] = {
    "binary_classification": {"average_precision": "max", "roc_auc": "max", "log_loss": "min",
                              "brier": "min"},
    "regression": {"rmse": "min", "mae": "min", "r2": "max"},
}
DEFAULT_METRIC = {"binary_classification": "average_precision", "regression": "rmse"}
ESTIMATORS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("hist_gradient_boosting", "random_forest", "logistic_regression"),
    "regression": ("hist_gradient_boosting", "random_forest", "ridge", "linear_regression"),
}


class LabelSpec(BaseModel):
    """A model's label: a field of a Feast label view, or of a labels source (file or folder).

    Either way the rows carry the label's join keys, the event time and, optionally, the time the
    label became known (`known_at`): a training set built "as of" a moment holds only the labels
    known then, so delayed labels work for every model.
    """

    model_config = ConfigDict(extra="forbid")

    view: str | None = None  # a LabelView of the feature repo (its batch source holds the rows)
    source: str | None = None  # a parquet file or folder of them, relative to the project
    field: str
    # for a source (a label view knows its own): the join keys, event time and known-at columns
    join_keys: list[str] = []
    event_timestamp: str = "event_timestamp"
    known_at: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> LabelSpec:
        if (self.view is None) == (self.source is None):
            raise ValueError("give exactly one of 'view' (a Feast LabelView) and 'source' (a labels file)")
        if self.source is not None and not self.join_keys:
            raise ValueError("a labels 'source' needs 'join_keys' (the columns that key its rows)")
        return self


class SearchSpec(BaseModel):
    """An optional hyperparameter search around the estimator: scikit-learn's GridSearchCV.

    Why here: the grid is a tunable like the params, so DVC tracks it; on the `ray` profile the
    candidate fits run on the Ray cluster (joblib's ray backend), elsewhere on local processes.
    The folds are time-ordered (TimeSeriesSplit) because the model scores future events.
    """

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]]  # estimator parameter -> candidate values (over estimator.params)
    cv: int = Field(3, ge=2)  # time-ordered folds of the training window
    scoring: str | None = None  # a scikit-learn scorer name; None: the gate metric's scorer

    @model_validator(mode="after")
    def _some_candidates(self) -> SearchSpec:
        empty = [k for k, v in self.grid.items() if not v]
        if not self.grid or empty:
            raise ValueError("search.grid: name at least one parameter, each with at least one value"
                             + (f" ({', '.join(empty)} has none)" if empty else ""))
        return self


class EstimatorSpec(BaseModel):
    """Which scikit-learn estimator to fit for the task, with its keyword arguments (passed as is)."""

    model_config = ConfigDict(extra="forbid")

    type: str = "hist_gradient_boosting"
    params: dict[str, Any] = {}
    search: SearchSpec | None = None  # None: fit `params` as they are


class GateParams(BaseModel):
    """The challenger/champion gate (see glue/promotion.py) of one model."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = None  # None: the task's default (average_precision, rmse)
    min_improvement: float = Field(0.005, ge=0.0)  # in the metric's better direction
    bootstrap_samples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    # absolute bounds any model must meet to become champion: a minimum for a metric where
    # higher is better, a maximum where lower is better (rmse <= 10)
    floors: dict[str, float] = {}


class ModelCardSpec(BaseModel):
    """What the model card (glue/model_card.py) says that only the project knows. Unset fields are
    written as "unknown" on the card, never guessed."""

    model_config = ConfigDict(extra="forbid")

    intended_use: str | None = None  # who uses the model for what decision
    limitations: str | None = None  # where it must not be used, known weaknesses
    segment_column: str | None = None  # metrics by each value of this column of the training frame


class ApprovalParams(BaseModel):
    """Who approves a challenger that passed the gate before the champion alias moves.

    ``by: gate`` (the default): the automatic gate alone. ``by: person``: on the listed profiles, a
    person too, through the Airflow 3 human-in-the-loop task ``approve`` of the model's training
    DAG (the Required Actions page), or `glue promote --approved-by NAME` from a shell. No answer
    within ``timeout_hours`` counts as a rejection; ``approvers`` limits who may answer (Airflow
    user names; empty: anyone allowed to act on the DAG).
    """

    model_config = ConfigDict(extra="forbid")

    by: Literal["gate", "person"] = "gate"
    profiles: list[Profile] = ["prod", "ray"]  # ray moves the champion in prod's registry
    timeout_hours: float = Field(72.0, gt=0)
    approvers: list[str] = []

    def person_required(self, profile: str) -> bool:
        """True where the champion may move only after a person said yes."""
        return self.by == "person" and profile in self.profiles


class ModelSpec(BaseModel):
    """One model of the project (an entry of ``models:``): what it is trained and served on, how it
    is judged, and its serving and monitoring policies (merged over ``defaults:``)."""

    model_config = ConfigDict(extra="forbid")

    name: str  # the registered model name: the key under `models:`
    feature_service: str
    task: Task
    label: LabelSpec
    estimator: EstimatorSpec = EstimatorSpec()
    decision_threshold: float | None = None  # binary: score above which the decision is positive
    validation_days: int = Field(7, ge=1)  # the most recent labelled days, held out for the gate
    random_state: int = 42
    reference_rows: int = Field(50_000, ge=100)  # training rows kept with the model: the drift reference
    # Larger training sets are fitted on a uniform random sample of this many rows (None: all);
    # the run records train_rows_available and train_rows, and the tag glue.train_sample.
    max_train_rows: int | None = Field(None, ge=1000)
    experiment_name: str | None = None  # default: "<name>-training"
    gate: GateParams = GateParams()
    approval: ApprovalParams = ApprovalParams()
    serving: dict[str, Any] = {}  # validated by glue/serving (ServingParams)
    monitoring: MonitoringParams = MonitoringParams()
    card: ModelCardSpec = ModelCardSpec()

    @model_validator(mode="after")
    def _fits_the_task(self) -> ModelSpec:
        metrics = TASK_METRICS[self.task]
        if self.gate.metric is None:
            self.gate.metric = DEFAULT_METRIC[self.task]
        for key, name in [("gate.metric", self.gate.metric),
                          *((f"gate.floors.{m}", m) for m in self.gate.floors)]:
            if name not in metrics:
                raise ValueError(f"{key}: '{name}' is not a metric of task {self.task} "
                                 f"(choose from {', '.join(metrics)})")
        if self.estimator.type not in ESTIMATORS[self.task]:
            raise ValueError(f"estimator.type: '{self.estimator.type}' is not an estimator for task "
                             f"{self.task} (choose from {', '.join(ESTIMATORS[self.task])})")
        if self.task == "binary_classification":
            if self.decision_threshold is None:
                self.decision_threshold = 0.5
            if not 0.0 < self.decision_threshold < 1.0:
                raise ValueError("decision_threshold: must lie strictly between 0 and 1")
        elif self.decision_threshold is not None:
            raise ValueError(f"decision_threshold: task {self.task} has no decision threshold")
        quality = self.monitoring.quality.metric
        if quality is None:
            quality = self.monitoring.quality.metric = DEFAULT_QUALITY_METRIC[self.task]
        if quality not in QUALITY_METRICS[self.task]:
            raise ValueError(f"monitoring.quality.metric: '{quality}' is not a quality metric of task "
                             f"{self.task} (choose from {', '.join(QUALITY_METRICS[self.task])})")
        if self.experiment_name is None:
            self.experiment_name = f"{self.name}-training"
        if self.monitoring.experiment_name is None:
            self.monitoring.experiment_name = f"{self.name}-monitoring"
        return self

    @property
    def metric_direction(self) -> Direction:
        return TASK_METRICS[self.task][self.gate.metric or DEFAULT_METRIC[self.task]]


DEFAULT_QUALITY_METRIC = {"binary_classification": "average_precision", "regression": "rmse"}
QUALITY_METRICS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("average_precision", "roc_auc", "precision", "recall"),
    "regression": ("rmse", "mae", "r2"),
}


class Params(BaseModel):
    """Everything in params.yaml. The `demo:` section belongs to the project's generator."""

    model_config = ConfigDict(extra="forbid")

    data: DataParams = DataParams()
    demo: dict[str, Any] = {}
    validation: ValidationParams
    features: FeaturesParams = FeaturesParams()
    # project-wide policies every model starts from (its own entries override them key by key)
    defaults: dict[str, Any] = {}
    models: dict[str, ModelSpec]

    @model_validator(mode="after")
    def _some_model(self) -> Params:
        if not self.models:
            raise ValueError("models: the project declares no model")
        return self

    def model(self, name: str | None = None) -> ModelSpec:
        """The spec of model `name`; without a name, the project's only model."""
        if name is None:
            if len(self.models) != 1:
                raise SettingsError(f"the project has {len(self.models)} models "
                                    f"({', '.join(self.models)}): name one (--model NAME)")
            return next(iter(self.models.values()))
        try:
            return self.models[name]
        except KeyError:
            raise SettingsError(f"params.yaml models: no model '{name}' "
                                f"(the project has {', '.join(self.models)})") from None


class RayClusterSettings(BaseModel):
    """The Ray cluster of the `ray` profile, as `glue ray start` launches it on this machine.

    Small by default (one CPU and a 256 MB object store per node, one worker node beside the head)
    because it shares the machine with everything else. The node address is on loopback but not
    127.0.0.1: Ray replaces 127.0.0.1 by the machine's routable address (so that other machines
    could join), and any other address of 127.0.0.0/8 is taken as given.
    """

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.2"
    port: int = Field(6390, ge=1024, le=65535)  # the head's GCS port; the client server uses port + 1
    workers: int = Field(1, ge=0)  # worker nodes started beside the head (`ray start --address`)
    cpus: int = Field(1, ge=1)  # CPUs each node offers
    object_store_mb: int = Field(256, ge=80)  # per node; Ray's minimum is ~75 MB
    # connect to this cluster instead (GLUE_RAY_ADDRESS, host:port): one glue did not start
    address_override: str | None = None
    # the cluster's authentication token, written by `glue ray start` (<state_dir>/ray/auth_token);
    # None for a cluster glue did not start, whose RAY_AUTH_* environment is the user's
    token_file: Path | None = None

    def auth_env(self) -> dict[str, str]:
        """The environment every process of glue's cluster and every driver of it runs with.

        Why explicit: Ray 2.5x turns token authentication on by itself for a `ray start --head`
        when a ~/.ray/auth_token exists (any earlier local ``ray.init()`` writes one), but not for
        `ray start --address` nor for a driver given an address, so a cluster started beside such
        a file rejected its own worker node (InvalidAuthToken). glue's cluster always uses token
        authentication with a token of its own, whatever ~/.ray holds.
        """
        if self.token_file is None:
            return {}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)}

    @property
    def address(self) -> str:
        """What a driver passes to ray.init and Feast's ray_address: the head's GCS address."""
        return self.address_override or f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, state: Path | None = None) -> RayClusterSettings:
        """GLUE_RAY_HOST, GLUE_RAY_PORT, GLUE_RAY_WORKERS, GLUE_RAY_CPUS, GLUE_RAY_OBJECT_STORE_MB,
        GLUE_RAY_ADDRESS; unset ones keep the defaults. `state` is the cluster's folder
        (<state_dir>/ray), where its token lives."""
        names = {"host": "HOST", "port": "PORT", "workers": "WORKERS", "cpus": "CPUS",
                 "object_store_mb": "OBJECT_STORE_MB", "address_override": "ADDRESS"}
        values: dict[str, Any] = {field: os.environ[f"{ENV_PREFIX}RAY_{env}"] for field, env in names.items()
                                  if os.environ.get(f"{ENV_PREFIX}RAY_{env}")}
        if state is not None and not values.get("address_override"):
            values["token_file"] = state / "auth_token"
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(f"GLUE_RAY_*: {_describe(exc)}") from None


class Settings(BaseModel):
    """Where everything lives for one profile, plus the parsed params.yaml."""

    model_config = ConfigDict(frozen=True)

    profile: Profile
    project_dir: Path
    params: Params

    # data, all under data_dir unless overridden
    data_dir: Path
    raw_dir: Path  # DVC-tracked raw data: <data.events>/ batches (one file per day) and labels
    validated_dir: Path  # accepted batches with their validation results
    quarantine_dir: Path  # rejected batches, each with its result JSON and data docs
    state_dir: Path  # the embedded stores and logs of the local profile (.glue/)

    # tools
    mlflow_tracking_uri: str
    mlflow_registry_uri: str
    mlflow_artifacts_dir: Path
    feast_repo: Path
    # the profile's feature_store.yaml (local: feature_repo/feature_store.yaml, prod: prod/...)
    feast_yaml: Path
    # the daily snapshot tables glue/features.py writes and the Feast file sources read
    features_dir: Path
    airflow_home: Path
    dvc_remote: str
    # monitoring: one folder per checked day (Evidently HTML/JSON, decision.json, metrics.prom)
    monitoring_dir: Path
    # where the DVC metrics and plots (metrics/*.json, metrics/plots/) are written: the project,
    # as dvc.yaml names them; `glue simulate` points it at its own folder
    outputs_dir: Path
    alert_webhook_url: str | None = None  # drift/decay alerts are POSTed here; logged when unset
    # SQLAlchemy URL of the database `glue score-batch` also writes its table to (prod: PostgreSQL,
    # the offline store's database, so scores sit next to the feature snapshots); None: files only
    warehouse_uri: str | None = None
    # the `ray` profile's cluster (glue ray start|stop|status; Feast's ray store and engine, batch
    # scoring on Ray Data, hyperparameter search); None on the other profiles
    ray: RayClusterSettings | None = None

    @property
    def raw_events_dir(self) -> Path:
        """data/raw/<events>/: the batches the validation gate checks."""
        return self.raw_dir / self.params.data.events

    @property
    def validated_events_dir(self) -> Path:
        """data/validated/<events>/: the accepted batches every later stage reads."""
        return self.validated_dir / self.params.data.events

    @property
    def models(self) -> list[ModelSpec]:
        """The project's model specs, in params.yaml order."""
        return list(self.params.models.values())

    def model(self, name: str | None = None) -> ModelSpec:
        """One model's spec (see Params.model)."""
        return self.params.model(name)


ENV_PREFIX = "GLUE_"

# Settings fields a user may override through GLUE_<NAME> (upper case).
_OVERRIDABLE = (
    "data_dir",
    "raw_dir",
    "validated_dir",
    "quarantine_dir",
    "state_dir",
    "mlflow_tracking_uri",
    "mlflow_registry_uri",
    "mlflow_artifacts_dir",
    "feast_repo",
    "feast_yaml",
    "features_dir",
    "airflow_home",
    "dvc_remote",
    "monitoring_dir",
    "outputs_dir",
    "alert_webhook_url",
    "warehouse_uri",
)

# Values the prod profile cannot guess: they name services.
_PROD_REQUIRED = ("mlflow_tracking_uri",)


def find_project_dir(start: Path | None = None) -> Path:
    """The project is the nearest directory holding params.yaml (or GLUE_PROJECT_DIR)."""
    env = os.environ.get("GLUE_PROJECT_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / PARAMS_FILE).is_file():
            raise SettingsError(f"GLUE_PROJECT_DIR={env}: no {PARAMS_FILE} in that directory")
        return path
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PARAMS_FILE).is_file():
            return candidate
    raise SettingsError(
        f"no {PARAMS_FILE} in {here} or any parent directory; run glue inside the project "
        "or set GLUE_PROJECT_DIR"
    )


def load_params(path: Path) -> Params:
    """Parse params.yaml, naming the file and the field on any error."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    models = raw.get("models")
    if isinstance(models, dict):
        defaults = raw.get("defaults") or {}
        raw = {**raw, "models": {name: {"name": name, **_merged(_policy_defaults(defaults), spec or {})}
                                 for name, spec in models.items()}}
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {_describe(exc)}") from None


def _policy_defaults(defaults: Any) -> dict[str, Any]:
    """The `defaults:` keys a model spec inherits (gate, serving, monitoring and the training knobs)."""
    return dict(defaults) if isinstance(defaults, dict) else {}


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, mapping by mapping (a model's gate.floors replaces no sibling key)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"field '{field}': {message}" if field else message)
    return "; ".join(parts)


def _defaults(profile: Profile, project_dir: Path) -> dict[str, Any]:
    state = project_dir / ".glue"
    data = project_dir / "data"
    common: dict[str, Any] = {
        "data_dir": data,
        "raw_dir": data / "raw",
        "validated_dir": data / "validated",
        "quarantine_dir": data / "quarantine",
        "state_dir": state,
        "mlflow_artifacts_dir": state / "mlartifacts",
        "feast_repo": project_dir / "feature_repo",
        "airflow_home": state / "airflow",
        "dvc_remote": str(state / "dvc-remote"),
        "monitoring_dir": project_dir / "reports" / "monitoring",
        "outputs_dir": project_dir,
    }
    if profile == "local":
        db = f"sqlite:///{state / 'mlflow.db'}"
        return {**common, "mlflow_tracking_uri": db, "mlflow_registry_uri": db}
    return common


def postgres_uri(database: str, driver: str = "postgresql+psycopg") -> str:
    """A database on the prod PostgreSQL (GLUE_POSTGRES_HOST/PORT/USER/PASSWORD, default the local
    service), as a SQLAlchemy URL; glue/services.py builds the service set's URLs with it too."""
    from sqlalchemy.engine import URL

    url = URL.create(
        driver,
        username=os.environ.get("GLUE_POSTGRES_USER", "postgres"),
        password=os.environ.get("GLUE_POSTGRES_PASSWORD") or None,
        host=os.environ.get("GLUE_POSTGRES_HOST", "127.0.0.1"),
        port=int(os.environ.get("GLUE_POSTGRES_PORT", "5432")),
        database=database,
    )
    return url.render_as_string(hide_password=False)


def service_database(name: str) -> str:
    """The name of one of the prod service set's databases: GLUE_SERVICES_DB_PREFIX + name.

    The prefix keeps a test run's databases apart from a user's own prod set on the same server.
    """
    return os.environ.get("GLUE_SERVICES_DB_PREFIX", "") + name


def feast_prod_env() -> dict[str, str]:
    """The FEAST_* variables feature_repo/prod/feature_store.yaml reads, as the GLUE_* settings say.

    Feast substitutes ``${VAR}`` from the environment; glue fills in each one that is not set from
    the same service settings the MLflow and Airflow URLs come from (GLUE_POSTGRES_*, GLUE_REDIS_*,
    GLUE_SERVICES_DB_PREFIX), so the Feast registry, offline and online stores follow them too.
    `glue services env` prints these for the Feast CLI.
    """
    env = os.environ.get
    return {
        "FEAST_POSTGRES_HOST": env("GLUE_POSTGRES_HOST", "127.0.0.1"),
        "FEAST_POSTGRES_PORT": env("GLUE_POSTGRES_PORT", "5432"),
        "FEAST_POSTGRES_USER": env("GLUE_POSTGRES_USER", "postgres"),
        "FEAST_POSTGRES_PASSWORD": env("GLUE_POSTGRES_PASSWORD", ""),
        "FEAST_POSTGRES_DB": service_database("feast"),
        "FEAST_REDIS_HOST": env("GLUE_REDIS_HOST", "127.0.0.1"),
        "FEAST_REDIS_PORT": env("GLUE_REDIS_PORT", "6379"),
        "FEAST_REDIS_DB": env("GLUE_REDIS_DB", "0"),
        # the `ray` profile's cluster (feature_repo/ray/feature_store.yaml: ray_address)
        "FEAST_RAY_ADDRESS": RayClusterSettings.from_env().address,
    }


def load_settings(profile: str | None = None, project_dir: Path | None = None) -> Settings:
    """Build the settings for a profile (default: GLUE_PROFILE, else ``local``)."""
    profile = profile or os.environ.get("GLUE_PROFILE", "local")
    if profile not in PROFILES:
        raise SettingsError(
            f"unknown profile '{profile}' (from GLUE_PROFILE or --profile); "
            f"choose one of: {', '.join(PROFILES)}"
        )
    project_dir = (project_dir or find_project_dir()).resolve()
    values = _defaults(profile, project_dir)  # type: ignore[arg-type]
    for name in _OVERRIDABLE:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env:
            values[name] = env
    # Defaults that follow an overridden directory.
    values.setdefault("features_dir", Path(values["data_dir"]) / "features")
    values.setdefault("feast_yaml", Path(values["feast_repo"]).joinpath(*FEAST_YAMLS[profile]))
    if profile in ("prod", "ray"):  # ray: prod's services, with Ray as the offline engine
        missing = [n for n in _PROD_REQUIRED if n not in values]
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise SettingsError(f"profile '{profile}' needs {names} (the services' addresses)")
        values.setdefault("mlflow_registry_uri", values["mlflow_tracking_uri"])
    if profile == "prod":
        feast_db = os.environ.get("FEAST_POSTGRES_DB") or feast_prod_env()["FEAST_POSTGRES_DB"]
        values.setdefault("warehouse_uri", postgres_uri(feast_db))
    if profile == "ray":
        values["ray"] = RayClusterSettings.from_env(Path(values["state_dir"]) / "ray")
    params = load_params(project_dir / PARAMS_FILE)
    try:
        return Settings(profile=profile, project_dir=project_dir, params=params, **values)
    except ValidationError as exc:
        raise SettingsError(f"settings: {_describe(exc)}") from None


def ray_cluster(project_dir: Path | None = None) -> tuple[RayClusterSettings, Path]:
    """The ray profile's cluster and the folder glue keeps its record in (<state_dir>/ray).

    Apart from load_settings because starting or stopping the cluster needs no MLflow or Feast
    address: `glue ray start` works before the services are up.
    """
    project_dir = (project_dir or find_project_dir()).resolve()
    state = Path(os.environ.get(ENV_PREFIX + "STATE_DIR") or _defaults("ray", project_dir)["state_dir"])
    return RayClusterSettings.from_env(state / "ray"), state / "ray"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, built once from the environment."""
    return load_settings()

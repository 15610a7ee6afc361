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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glue.errors import SettingsError
from monitoring.policy import MonitoringParams

PROFILES = ("local", "prod")
Profile = Literal["local", "prod"]

PARAMS_FILE = "params.yaml"


class DemoParams(BaseModel):
    """Shape of the generated fraud data set (see glue/demo_data.py)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    start_date: str = "2026-01-01"
    days: int = 60
    transactions_per_day: int = 1700
    customers: int = 5000
    merchants: int = 400
    fraud_rate: float = 0.015
    label_delay_days: int = 7
    shift_day: int | None = None
    shift_kind: Literal["none", "new_fraud_pattern", "spending_change"] = "none"


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


class FeaturesParams(BaseModel):
    """The feature stage (see glue/features.py): which Feast feature service the model uses."""

    model_config = ConfigDict(extra="forbid")

    feature_service: str = "fraud_model_v1"


class ModelParams(BaseModel):
    """Which scikit-learn estimator to fit, with its keyword arguments (passed through as is)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hist_gradient_boosting", "random_forest", "logistic_regression"] = (
        "hist_gradient_boosting"
    )
    params: dict[str, Any] = {}


class TrainParams(BaseModel):
    """The training stage (see glue/training.py)."""

    model_config = ConfigDict(extra="forbid")

    experiment_name: str = "fraud-training"
    registered_model_name: str = "fraud-detector"
    validation_days: int = Field(7, ge=1)
    random_state: int = 42
    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    reference_rows: int = Field(50_000, ge=1000)
    model: ModelParams = ModelParams()


class GateParams(BaseModel):
    """The challenger/champion gate (see glue/promotion.py)."""

    model_config = ConfigDict(extra="forbid")

    primary_metric: Literal["average_precision", "roc_auc"] = "average_precision"
    min_improvement: float = 0.005
    bootstrap_samples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    floors: dict[Literal["average_precision", "roc_auc"], float] = {
        "average_precision": 0.2,
        "roc_auc": 0.7,
    }


class Params(BaseModel):
    """Everything in params.yaml. Sections not modelled yet are kept as plain dicts."""

    model_config = ConfigDict(extra="allow")

    demo: DemoParams = DemoParams()
    validation: ValidationParams
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    gate: GateParams = GateParams()
    monitoring: MonitoringParams = MonitoringParams()


class Settings(BaseModel):
    """Where everything lives for one profile, plus the parsed params.yaml."""

    model_config = ConfigDict(frozen=True)

    profile: Profile
    project_dir: Path
    params: Params

    # data, all under data_dir unless overridden
    data_dir: Path
    raw_dir: Path  # DVC-tracked raw batches: transactions/ and labels/, one file per day
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

    @property
    def raw_transactions_dir(self) -> Path:
        return self.raw_dir / "transactions"

    @property
    def raw_labels_dir(self) -> Path:
        return self.raw_dir / "labels"


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
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        parts.append(f"field '{field}': {err['msg']}")
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
        "FEAST_OFFLINE_STORE": "postgres",
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
    feast_yaml = ("feature_store.yaml",) if profile == "local" else ("prod", "feature_store.yaml")
    values.setdefault("feast_yaml", Path(values["feast_repo"]).joinpath(*feast_yaml))
    if profile == "prod":
        missing = [n for n in _PROD_REQUIRED if n not in values]
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise SettingsError(f"profile 'prod' needs {names} (the services' addresses)")
        values.setdefault("mlflow_registry_uri", values["mlflow_tracking_uri"])
        feast_db = os.environ.get("FEAST_POSTGRES_DB") or feast_prod_env()["FEAST_POSTGRES_DB"]
        values.setdefault("warehouse_uri", postgres_uri(feast_db))
    params = load_params(project_dir / PARAMS_FILE)
    try:
        return Settings(profile=profile, project_dir=project_dir, params=params, **values)
    except ValidationError as exc:
        raise SettingsError(f"settings: {_describe(exc)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, built once from the environment."""
    return load_settings()

"""The registry contract: alias names, tag keys and artifact names that the stages agree on.

Why one module: training writes these names into MLflow (run tags, model-version tags, artifacts),
and the gate, serving, batch scoring and monitoring read them back, often months later and from
another process. A name spelled twice can drift apart, and an existing registry then stops
working; so each is defined here once, and every stage imports it (as MLflow's own tags live in
``mlflow/utils/mlflow_tags.py``). The values are the registry's on-disk format: renaming a
constant is free, changing a value breaks every model already registered.

It imports only the standard library, so any module, however light it must stay (the CLI, serving),
can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# --- registry aliases ---------------------------------------------------------------------------

CHAMPION = "champion"  # the version that serves and that monitoring checks; only the gate moves it
CHALLENGER = "challenger"  # the latest trained version, waiting for the gate

# --- tags on the training run and on its model version ------------------------------------------

TAG_PREFIX = "glue."  # every glue tag starts with it

# lineage (glue/lineage.py gathers the facts; the run-context plugin adds the cheap ones to every run)
GIT_COMMIT = "glue.git_commit"
GIT_DIRTY = "glue.git_dirty"
DVC_DATA_VERSION = "glue.dvc_data_version"  # the DVC hash of exactly the data the training read
DVC_DATA_PATH = "glue.dvc_data_path"
DVC_REMOTE = "glue.dvc_remote"  # the DVC remote that holds that version (glue/adapters/dvc.py fetch)
DVC_DATA_FILES = "glue.dvc_data_files"
# on every run of a project (the run-context plugin): what dvc.lock records for the raw data, which
# is what `dvc checkout` gives, not necessarily what that run read
DVC_LOCK_DATA_VERSION = "glue.dvc_lock_data_version"
VALIDATION_SUMMARY = "glue.validation_summary"
VALIDATION_SUMMARY_SHA256 = "glue.validation_summary_sha256"
VALIDATION_BATCH_DAYS = "glue.validation_batch_days"
PROFILE = "glue.profile"
PROJECT_DIR = "glue.project_dir"

# training (glue/training.py): the split, the features and the params the model was built with
TRAIN_START = "glue.train_start"
TRAIN_END = "glue.train_end"
VALIDATION_START = "glue.validation_start"
VALIDATION_END = "glue.validation_end"
VALIDATION_DAYS = "glue.validation_days"
FEATURE_SERVICE = "glue.feast_feature_service"
FEATURE_REFS = "glue.feast_feature_refs"  # comma-separated view:feature refs (see feature_refs())
FEATURE_COLUMNS = "glue.feature_columns"  # the model's inputs in training order (see feature_columns())
TRAIN_PARAMS = "glue.train_params"
TRAIN_THREADS = "glue.train_openmp_threads"  # OpenMP threads of the fit: sums run in their order
TRAIN_SAMPLE = "glue.train_sample"  # the rows the fit saw: all, or a uniform sample (max_train_rows)
TASK = "glue.task"  # binary_classification | regression: how to call the model and judge it
LABEL = "glue.label"  # the label column the model was trained on
TRAIN_RUN_ID = "glue.train_run_id"  # on the model version: the run whose artifacts are below
# on the model version: SHA-256 of the model's files as registered (glue.adapters.mlflow), checked
# before every load, so a model changed in the artifact store after registration is never served
MODEL_SHA256 = "glue.model_sha256"
# who is training (glue.training.attempt_key): an Airflow task instance, whose retry is the same
# attempt, or a process on a host; a retry removes what a killed attempt registered
TRAIN_ATTEMPT = "glue.train_attempt"
TRAIN_PID = "glue.train_pid"  # the process of a host attempt: dead while its run is RUNNING = killed
TRAIN_ABANDONED = "glue.train_abandoned"  # on a killed attempt's run: what the next attempt removed
FEAST_FEATURE_SERVICE = "feast.feature_service"  # the tag Feast's own model resolver reads

# the gate (glue/promotion.py): every verdict tag on a model version is gate_tag(<name>)
GATE_TAG_PREFIX = "glue.gate."
GATE_PASSED, GATE_REJECTED, GATE_STALE = "passed", "rejected", "stale"  # values of gate_tag("decision")
# params.yaml approval.by person: passed the gate, waits for a person / a person said no
GATE_AWAITING_APPROVAL, GATE_DECLINED = "awaiting_approval", "declined"
AUTOMATIC_APPROVER = "automatic gate (params.yaml gate)"  # gate_tag("approver") without a person

# monitoring (glue/monitor.py): tags of the daily check's run, and the verdict on the champion
MONITOR_DAY = "glue.monitor.day"
MONITOR_MODEL = "glue.monitor.model"
MONITOR_MODEL_VERSION = "glue.monitor.model_version"
MONITOR_DRIFT = "glue.monitor.drift"
MONITOR_DECAY = "glue.monitor.decay"
MONITOR_RETRAIN = "glue.monitor.retrain"
MONITOR_LAST_CHECK = "glue.monitor.last_check"  # on the champion's model version

# --- artifacts ----------------------------------------------------------------------------------

MODEL_ARTIFACT = "model"  # name of the logged model inside a training run
# the MLflow dataset source type of the training and validation sets (mlflow_plugins/dataset_source.py)
DATASET_SOURCE_TYPE = "glue_feast_dvc"
FEAST_FEATURES_FILE = "feast_features.json"  # what Feast's model resolver looks for on a run
FEATURE_IMPORTANCE_JSON = "feature_importance.json"
FEATURE_IMPORTANCE_PNG = "feature_importance.png"
RESIDUALS_PNG = "residuals.png"
MODEL_CARD_JSON = "model_card.json"  # glue/model_card.py: written by training, completed by the gate
MODEL_CARD_MARKDOWN = "model_card.md"  # a regression's predicted-vs-actual and residual plots
# A sample of the training set with the model's scores: monitoring finds it from the champion's
# lineage (alias -> TRAIN_RUN_ID -> this artifact) and uses it as the reference window for drift.
REFERENCE_ARTIFACT = "monitoring/reference.parquet"
# The held-out validation rows (features, label, this model's score): the gate scores the champion
# on exactly these rows, and monitoring compares delayed-label quality with them.
VALIDATION_ARTIFACT = "monitoring/validation.parquet"
PREDICTION_COLUMN = "prediction"  # the model's score in the two artifacts above
MONITORING_ARTIFACT_DIR = "monitoring"  # where a monitoring run keeps the day's reports

_SEPARATOR = ","  # list-valued tags: names joined by commas (Feast names never contain one)


def feature_columns(tags: Mapping[str, str]) -> list[str]:
    """The model's input columns in training order, from its version's (or run's) tags; [] if untagged."""
    return _split(tags.get(FEATURE_COLUMNS, ""))


def feature_refs(tags: Mapping[str, str]) -> list[str]:
    """The Feast feature refs (view:feature) the model was trained on; [] if untagged."""
    return _split(tags.get(FEATURE_REFS, ""))


def join_tag(names: Iterable[str]) -> str:
    """The tag value of a list of names (feature columns, refs, days): the inverse of the parsers."""
    return _SEPARATOR.join(names)


def gate_tag(name: str) -> str:
    """The key of one gate verdict tag, e.g. gate_tag("decision") == "glue.gate.decision"."""
    return GATE_TAG_PREFIX + name


def _split(value: str) -> list[str]:
    return [name for name in value.split(_SEPARATOR) if name]

"""The project's models, as the DAG files need them: read from params.yaml at parse time.

One DAG file builds one DAG per model from this list (Airflow's "dynamic DAG generation" from a
structured configuration file). Only ``yaml`` is imported: the DAG processor parses every file
every few seconds, and glue's settings (pydantic models, the tools behind them) are for the tasks.
The DAG ids are glue.adapters.airflow's (training_dag_id, monitoring_dag_id); a test keeps the two
in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
FEATURES_DAG = "glue_features"
TRAINING_DAG_PREFIX = "glue_training__"
MONITORING_DAG_PREFIX = "glue_monitoring__"


def project_dir() -> Path:
    """GLUE_PROJECT_DIR (set by `glue airflow ...`), else the folder above dags/."""
    env = os.environ.get("GLUE_PROJECT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent


def models() -> list[dict[str, Any]]:
    """Name, task, feature service and approval policy of each model of params.yaml ``models:``
    (the approval merged over ``defaults:``), in its order."""
    path = project_dir() / PARAMS_FILE
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(path.read_text(), Loader=loader) or {}
    specs = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(specs, dict) or not specs:
        raise ValueError(f"{path}: 'models:' must map each model's name to its spec")
    defaults = raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}
    return [{"name": str(name), "task": (spec or {}).get("task", "?"),
             "feature_service": (spec or {}).get("feature_service", "?"),
             "approval": {**(defaults.get("approval") or {}), **((spec or {}).get("approval") or {})}}
            for name, spec in specs.items()]


def training_dag_id(model: str) -> str:
    return TRAINING_DAG_PREFIX + model


def monitoring_dag_id(model: str) -> str:
    return MONITORING_DAG_PREFIX + model

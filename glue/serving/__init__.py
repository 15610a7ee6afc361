"""`glue serve`: online scoring of every model of the project in one hop, from the request to Feast's
online store to the model.

The package is laid out as MLflow's scoring server separates its parts:

- :mod:`~glue.serving.app` - the FastAPI app: routes (``/models/<name>/predict``) and transport only;
- :mod:`~glue.serving.schema` - each model's request schema, derived from its Feast feature
  service: body -> validated rows, or a 4xx naming the field;
- :mod:`~glue.serving.service` - the scoring logic behind the routes (the hot path), one endpoint
  per model;
- :mod:`~glue.serving.reloading` - watching each model's registry aliases and swapping versions;
- :mod:`~glue.serving.shadow` - shadow and A/B per model: the arm choice and the shadow scorer;
- :mod:`~glue.serving.metrics` - Prometheus metrics, labelled by model;
- :mod:`~glue.serving.prediction_writer` - the prediction log, written off the request thread;
- :mod:`~glue.serving.store` - the process's Feast store, through glue/adapters/feast.py;
- :mod:`~glue.serving.config` - each model's ``serving:`` policy and GLUE_SERVE_*.

What runs beside the requests, never in their way:

- a *reloader* thread polls the registry (the shortest ``serving.poll_seconds`` of the models, env
  GLUE_SERVE_POLL_SECONDS) and, when a model's ``champion`` moves, loads the new version and swaps
  one reference. A request works with the versions it grabbed when it started; a failed load keeps
  the old version and says why in the log and in ``glue_serve_model_reloads_total{result="failed"}``
  (that version is tried again after a minute, in case the cause was passing). It also opens the
  Feast store (re-opens it after an outage), derives each model's request schema from its feature
  service, and refreshes Feast's registry cache so no request pays for that.
- a *prediction log* writer thread appends one JSON line per answered row to
  ``<state_dir>/predictions/YYYY-MM-DD.jsonl`` (UTC day), from a bounded queue: when the disk
  cannot keep up, lines are dropped and counted rather than slowing the answers.
- in ``shadow`` mode a worker thread per model scores its ``challenger`` on the same features and
  logs it with arm ``shadow``; it never answers with it.

Configuration: each model's ``serving:`` entries in params.yaml over ``defaults.serving`` (see
:class:`ServingParams`), overridden by GLUE_SERVE_* environment variables. Importing this package
loads FastAPI (not Feast nor MLflow); the CLI imports it only inside `glue serve`.
"""

from glue.serving.app import app_from_env, create_app, model_routes, routes_of, serve
from glue.serving.config import (
    ENV_CHALLENGER_WEIGHT,
    ENV_MODE,
    ENV_POLL_SECONDS,
    ServingParams,
    all_serving_params,
    serving_params,
)
from glue.serving.metrics import Metrics
from glue.serving.prediction_writer import LogBatch, PredictionLog
from glue.serving.reloading import Models, ModelState, ServedModel, load_model
from glue.serving.schema import INSTANCES, RequestSchema, ServingError
from glue.serving.service import Endpoint, ScoringService
from glue.serving.shadow import SHADOW, ab_arm
from glue.serving.store import StoreHandle, open_store

__all__ = [
    "ENV_CHALLENGER_WEIGHT",
    "ENV_MODE",
    "ENV_POLL_SECONDS",
    "INSTANCES",
    "SHADOW",
    "Endpoint",
    "LogBatch",
    "Metrics",
    "ModelState",
    "Models",
    "PredictionLog",
    "RequestSchema",
    "ScoringService",
    "ServedModel",
    "ServingError",
    "ServingParams",
    "StoreHandle",
    "ab_arm",
    "all_serving_params",
    "app_from_env",
    "create_app",
    "load_model",
    "model_routes",
    "open_store",
    "routes_of",
    "serve",
    "serving_params",
]

"""`glue serve`: online fraud scoring in one hop, from the request to Feast's online store to the model.

The package is laid out as MLflow's scoring server separates its parts:

- :mod:`~glue.serving.app` - the FastAPI app: routes and transport only;
- :mod:`~glue.serving.schema` - the request schema: body -> validated transactions, or a 4xx;
- :mod:`~glue.serving.service` - the scoring logic behind the routes (the hot path);
- :mod:`~glue.serving.reloading` - watching the registry aliases and swapping models;
- :mod:`~glue.serving.shadow` - shadow and A/B: the arm choice and the shadow scorer;
- :mod:`~glue.serving.metrics` - Prometheus metrics;
- :mod:`~glue.serving.prediction_writer` - the prediction log, written off the request thread;
- :mod:`~glue.serving.store` - the process's Feast store, through glue/feature_store.py;
- :mod:`~glue.serving.config` - the ``serving:`` policy of params.yaml and GLUE_SERVE_*.

What runs beside the requests, never in their way:

- a *reloader* thread polls the registry (``serving.poll_seconds``, env GLUE_SERVE_POLL_SECONDS)
  and, when ``champion`` moves, loads the new version and swaps one reference. A request works
  with the models it grabbed when it started; a failed load keeps the old model and says why in
  the log and in ``glue_serve_model_reloads_total{result="failed"}`` (that version is tried again
  after a minute, in case the cause was passing). It also re-opens the Feast
  store after an outage and refreshes Feast's registry cache so no request pays for that.
- a *prediction log* writer thread appends one JSON line per scored transaction to
  ``<state_dir>/predictions/YYYY-MM-DD.jsonl`` (UTC day), from a bounded queue: when the disk
  cannot keep up, lines are dropped and counted rather than slowing the answers.
- in ``shadow`` mode a worker thread scores the ``challenger`` on the same features and logs it
  with arm ``shadow``; it never answers with it.

Configuration: an optional ``serving:`` section of params.yaml (see :class:`ServingParams`),
overridden by GLUE_SERVE_* environment variables. Importing this package loads FastAPI (not Feast
nor MLflow); the CLI imports it only inside `glue serve`.
"""

from glue.serving.app import app_from_env, create_app, serve
from glue.serving.config import (
    ENV_CHALLENGER_WEIGHT,
    ENV_MODE,
    ENV_POLL_SECONDS,
    ServingParams,
    serving_params,
)
from glue.serving.metrics import Metrics
from glue.serving.prediction_writer import LogBatch, PredictionLog
from glue.serving.reloading import Models, ServedModel, load_model
from glue.serving.schema import RequestParser, ServingError, event_hour
from glue.serving.service import ScoringService
from glue.serving.shadow import SHADOW, ab_arm
from glue.serving.store import StoreHandle, open_store

__all__ = [
    "ENV_CHALLENGER_WEIGHT",
    "ENV_MODE",
    "ENV_POLL_SECONDS",
    "SHADOW",
    "LogBatch",
    "Metrics",
    "Models",
    "PredictionLog",
    "RequestParser",
    "ScoringService",
    "ServedModel",
    "ServingError",
    "ServingParams",
    "StoreHandle",
    "ab_arm",
    "app_from_env",
    "create_app",
    "event_hour",
    "load_model",
    "open_store",
    "serve",
    "serving_params",
]

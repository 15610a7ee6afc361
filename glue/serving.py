"""`glue serve`: online fraud scoring in one hop, from the request to Feast's online store to the model.

Why one hop: the Feast ``FeatureStore`` is opened once per process and read in-process (no Feast
feature server between the client and the model), and the model behind the registry alias
``champion`` is loaded once and kept in memory. A request is one Feast online read for all its
transactions, one ``predict_proba`` per model, and a JSON answer.

Conventions follow MLflow's scoring server where they fit: JSON in and out, ``predictions`` in the
answer, errors as ``{"error_code", "message"}`` (plus ``field`` naming the offending input), and
``/health`` (``/ping``), ``/version`` and ``/invocations`` (same as ``/predict``).

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

Unknown customers or merchants (no row in the online store) are rejected with 422 by default:
scoring them with all-missing history features gives a number nobody asked for. Set
``serving.unknown_entities: score`` to score them anyway (the features are then NaN, which the
model's imputer handles as in training).

Configuration: an optional ``serving:`` section of params.yaml (see :class:`ServingParams`),
overridden by GLUE_SERVE_* environment variables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from glue import contract, prediction_log
from glue.contract import CHALLENGER, CHAMPION
from glue.errors import GlueError, SettingsError

if TYPE_CHECKING:
    from feast import FeatureStore

    from glue.feature_store import OnlineRead, OnlineReader
    from glue.settings import Settings

log = logging.getLogger(__name__)

SHADOW = "shadow"  # the arm of a shadow scoring in the prediction log; never an answer

ENV_POLL_SECONDS = "GLUE_SERVE_POLL_SECONDS"
ENV_MODE = "GLUE_SERVE_MODE"
ENV_CHALLENGER_WEIGHT = "GLUE_SERVE_CHALLENGER_WEIGHT"

_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROUTES = ("/predict", "/invocations", "/health", "/ping", "/ready", "/version", "/metrics")
_RETRY_FAILED_SECONDS = 60.0  # a version that failed to load is tried again after this long


class ServingParams(BaseModel):
    """The optional ``serving:`` section of params.yaml; GLUE_SERVE_* variables override it."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "shadow", "ab"] = "off"
    # share of customers (by a hash of customer_id) answered by the challenger in mode `ab`
    challenger_weight: float = Field(0.0, ge=0.0, le=1.0)
    poll_seconds: float = Field(10.0, gt=0.0)
    champion_alias: str = CHAMPION
    challenger_alias: str = CHALLENGER
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    unknown_entities: Literal["reject", "score"] = "reject"
    log_predictions: bool = True
    log_queue_rows: int = Field(200_000, ge=1000)  # pending log lines before new ones are dropped


def serving_params(settings: Settings) -> ServingParams:
    """params.yaml ``serving:`` (Params keeps unknown sections as dicts), then the environment."""
    raw = getattr(settings.params, "serving", None) or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"params.yaml serving: expected a mapping, got {type(raw).__name__}")
    values = dict(raw)
    for env, key in ((ENV_POLL_SECONDS, "poll_seconds"), (ENV_MODE, "mode"),
                     (ENV_CHALLENGER_WEIGHT, "challenger_weight")):
        if os.environ.get(env):
            values[key] = os.environ[env]
    try:
        return ServingParams.model_validate(values)
    except ValidationError as exc:
        where = "; ".join(f"serving.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"params.yaml / GLUE_SERVE_*: {where}") from None


class ServingError(Exception):
    """An answer other than 200, with the MLflow-style error code and the input field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self, request_id: str) -> dict[str, Any]:
        out = {"error_code": self.code, "message": self.message, "request_id": request_id}
        if self.field:
            out["field"] = self.field
        return out


def _bad(message: str, field: str | None = None, status: int = 422) -> ServingError:
    code = {400: "BAD_REQUEST", 413: "RESOURCE_LIMIT_EXCEEDED"}.get(status, "INVALID_PARAMETER_VALUE")
    return ServingError(status, code, message, field)


def _unavailable(message: str) -> ServingError:
    return ServingError(503, "TEMPORARILY_UNAVAILABLE", message)


# --- the request -----------------------------------------------------------------------------------


class RequestParser:
    """Turns a request body into validated transactions, or a 4xx naming the field at fault.

    The field rules (id minimums, amount range, channel values) come from the raw-batch schema in
    params.yaml ``validation.columns``, so the service accepts exactly what the pipeline would.
    """

    def __init__(self, settings: Settings, params: ServingParams) -> None:
        self.max_rows = params.max_batch_rows
        self.channels = _channels(settings)
        self.model = _transaction_model(settings, self.channels)
        self._rows = TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def parse(self, body: bytes) -> list[Any]:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise _bad(f"request body is not JSON: {exc}", status=400) from None
        if isinstance(payload, dict) and "transactions" in payload:
            extra = sorted(set(payload) - {"transactions"})
            if extra:
                raise _bad(f"unknown field '{extra[0]}' next to 'transactions'", extra[0])
            rows, prefix = payload["transactions"], "transactions"
            if not isinstance(rows, list):
                raise _bad("'transactions' must be a list of transactions", "transactions")
        elif isinstance(payload, dict):
            rows, prefix = [payload], None  # one transaction without the list
        else:
            raise _bad('body must be {"transactions": [...]} or one transaction object', status=400)
        if not rows:
            raise _bad("'transactions' is empty: send at least one transaction", "transactions")
        if len(rows) > self.max_rows:
            raise _bad(f"'transactions' has {len(rows)} rows, at most {self.max_rows} per request",
                       "transactions", status=413)
        try:
            txns = self._rows.validate_python(rows)
        except ValidationError as exc:
            raise _validation_error(exc, prefix) from None
        for i, t in enumerate(txns):
            if t.event_timestamp is None and t.event_hour is None:
                where = _field_name(prefix, (i, "event_timestamp"))
                raise _bad(f"{where}: required (or event_hour, the UTC hour 0-23)", where)
        return txns


def _channels(settings: Settings) -> tuple[str, ...]:
    rule = settings.params.validation.columns.get("channel")
    return tuple((rule.allowed if rule else None) or ("online", "in_store", "atm"))


def _transaction_model(settings: Settings, channels: tuple[str, ...]) -> type[BaseModel]:
    """The pydantic model of one transaction, with the limits of params.yaml validation.columns."""
    import datetime as _dt

    rules = settings.params.validation.columns

    def limits(name: str, default_min: float | None = None) -> dict[str, float]:
        rule = rules.get(name)
        low = rule.min if rule and rule.min is not None else default_min
        high = rule.max if rule else None
        return {k: v for k, v in (("ge", low), ("le", high)) if v is not None}

    return create_model(
        "Transaction",
        __config__=ConfigDict(extra="forbid"),
        transaction_id=(str | None, Field(None, max_length=256)),
        customer_id=(int, Field(..., **limits("customer_id", 0))),
        merchant_id=(int, Field(..., **limits("merchant_id", 0))),
        amount=(float, Field(..., allow_inf_nan=False, **limits("amount"))),
        channel=(Literal[channels], ...),  # type: ignore[valid-type]
        card_present=(bool, ...),
        event_timestamp=(_dt.datetime | None, None),
        event_hour=(int | None, Field(None, ge=0, le=23)),
    )


def _validation_error(exc: ValidationError, prefix: str | None) -> ServingError:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:5]:
        loc = _field_name(prefix, err["loc"])
        if err["type"] == "missing":
            parts.append(f"{loc}: field required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return _bad("; ".join(parts) + more, _field_name(prefix, errors[0]["loc"]))


def _field_name(prefix: str | None, loc: tuple[Any, ...]) -> str:
    """('transactions', (3, 'amount')) -> 'transactions[3].amount'; a single object -> 'amount'."""
    index, rest = (loc[0], loc[1:]) if loc and isinstance(loc[0], int) else (None, loc)
    head = f"{prefix}[{index}]" if prefix else ""
    tail = ".".join(str(p) for p in rest if not isinstance(p, int))
    return ".".join(p for p in (head, tail) if p) or (prefix or "body")


def event_hour(txn: Any) -> int:
    """The request-time feature `event_hour`: UTC hour of event_timestamp (naive means UTC)."""
    if txn.event_hour is not None:
        return int(txn.event_hour)
    ts = txn.event_timestamp
    return (ts.astimezone(dt.UTC) if ts.tzinfo else ts).hour


def ab_arm(customer_id: int, challenger_weight: float) -> str:
    """Deterministic A/B split: the same customer always lands in the same arm.

    sha256 of the id, first 8 bytes as a fraction of 2**64, compared with the weight: uniform,
    stable across processes and restarts (Python's hash() is salted per process).
    """
    digest = hashlib.sha256(str(int(customer_id)).encode()).digest()
    return CHALLENGER if int.from_bytes(digest[:8], "big") / 2.0**64 < challenger_weight else CHAMPION


# --- the model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and how to score a float matrix with it."""

    name: str
    version: str
    alias: str
    feature_service: str
    columns: tuple[str, ...]  # the model's inputs in training order (version tag glue.feature_columns)
    predict: Callable[[np.ndarray], np.ndarray]  # rows x columns float64 -> P(fraud)
    scoring_path: str  # glue.scoring.scorer's path: compiled, numpy or DataFrame
    loaded_at: float


def load_model(settings: Settings, alias: str, store: FeatureStore) -> ServedModel | None:
    """The version behind `alias` (None if there is none), checked against the Feast service."""
    from glue import feature_store, tracking

    name = settings.params.train.registered_model_name
    ref = tracking.get_alias(name, alias)
    if ref is None:
        return None
    return _load_version(settings, ref, alias, store, feature_store, tracking)


def _load_version(settings: Settings, ref: Any, alias: str, store: FeatureStore, feature_store: Any,
                  tracking: Any) -> ServedModel:
    from glue import scoring

    columns = tuple(contract.feature_columns(ref.tags))
    if not columns:
        raise GlueError(f"{ref.name} version {ref.version} has no tag {contract.FEATURE_COLUMNS}: it was "
                        "not trained by `glue train`, so its input columns are unknown")
    service = ref.tags.get(contract.FEATURE_SERVICE) or settings.params.features.feature_service
    provided, _ = feature_store.feature_columns(store, service)
    missing = [c for c in columns if c not in provided]
    if missing:
        raise GlueError(f"{ref.name} version {ref.version} needs column(s) {', '.join(missing[:5])} that "
                        f"Feast feature service '{service}' does not provide")
    model = tracking.load_sklearn_model(ref.uri)
    predict, path = scoring.scorer(model, columns)
    return ServedModel(name=ref.name, version=ref.version, alias=alias, feature_service=service,
                       columns=columns, predict=predict, scoring_path=path, loaded_at=time.time())


# --- the features ----------------------------------------------------------------------------------


def _entity_rows(txns: list[Any], hours: list[int]) -> list[dict[str, Any]]:
    """Feast entity rows: the join keys and the request fields of each transaction."""
    return [{"customer_id": t.customer_id, "merchant_id": t.merchant_id, "amount": t.amount,
             "channel": t.channel, "card_present": t.card_present, "event_hour": h}
            for t, h in zip(txns, hours, strict=True)]


@dataclass
class StoreHandle:
    """The Feast store of this process and one reader per feature service in use."""

    store: FeatureStore
    opened_at: float
    readers: dict[str, OnlineReader] = field(default_factory=dict)

    def reader(self, service: str) -> OnlineReader:
        found = self.readers.get(service)
        if found is None:
            from glue.feature_store import OnlineReader

            found = self.readers[service] = OnlineReader(self.store, service)
        return found


def open_store(settings: Settings) -> StoreHandle:
    """Open the profile's Feast store for serving: no per-read MLflow logging, registry warm."""
    from glue import feature_store

    store = feature_store.open_store(settings)
    mlflow_cfg = getattr(store.config, "mlflow", None)
    if mlflow_cfg is not None and getattr(mlflow_cfg, "auto_log", False):
        # Feast would look for an active MLflow run on every online read: none here, pure cost.
        mlflow_cfg.auto_log = False
    store.refresh_registry()
    return StoreHandle(store=store, opened_at=time.time())


# --- metrics ---------------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics of one app, in a registry of its own (several apps can share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("glue_serve_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("glue_serve_request_latency_seconds", "Time to answer, by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("glue_serve_errors", "Failed predictions by error code",
                              ["code"], registry=r)
        self.predictions = Counter("glue_serve_predictions", "Transactions scored, by arm",
                                   ["arm"], registry=r)
        self.flagged = Counter("glue_serve_flagged", "Transactions answered with decision flag",
                               registry=r)
        self.model_version = Gauge("glue_serve_model_version", "Registry version of the served model",
                                   ["model", "alias"], registry=r)
        self.reloads = Counter("glue_serve_model_reloads", "Model loads after an alias moved",
                               ["alias", "result"], registry=r)
        self.ready = Gauge("glue_serve_ready", "1 when a model and the feature store are loaded",
                           registry=r)
        self.feature_age = Gauge("glue_serve_feature_age_seconds",
                                 "Age of the oldest online feature value in the last request, by view",
                                 ["view"], registry=r)
        self.log_dropped = Counter("glue_serve_prediction_log_dropped",
                                   "Prediction log lines dropped because the writer fell behind",
                                   registry=r)
        self.shadow_dropped = Counter("glue_serve_shadow_dropped",
                                      "Shadow scorings skipped because the shadow worker fell behind",
                                      registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --- the prediction log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogBatch:
    """Predictions of one request (or its shadow scoring), formatted by the writer thread."""

    at: float  # epoch seconds
    request_id: str
    model_name: str
    txns: list[Any]
    hours: list[int]
    rows: np.ndarray  # which request rows these are
    arm: str | list[str]
    version: str | list[str]
    columns: tuple[str, ...] | list[tuple[str, ...]]
    features: np.ndarray | list[np.ndarray]  # one row per entry, in that entry's columns
    scores: np.ndarray
    threshold: float


class PredictionLog:
    """Appends predictions as JSON lines to <folder>/YYYY-MM-DD.jsonl from a background thread.

    The request thread only enqueues; formatting and writing happen here. Each flush is one
    write() per file on a file opened for appending, so workers of one host sharing the folder
    do not interleave within a line.
    """

    def __init__(self, folder: Path, metrics: Metrics, max_rows: int) -> None:
        self.folder = folder
        self.metrics = metrics
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[LogBatch | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="glue-prediction-log", daemon=True)
        self._thread.start()

    def submit(self, batch: LogBatch) -> None:
        n = len(batch.rows)
        with self._lock:
            if self._pending + n > self.max_rows:
                self.metrics.log_dropped.inc(n)
                return
            self._pending += n
        self._queue.put(batch)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            batches = [self._queue.get()]
            while len(batches) < 256:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batches
            batches = [b for b in batches if b is not None]
            try:
                self._write(batches)
            except Exception:
                log.exception("prediction log: could not write %d batch(es) to %s", len(batches), self.folder)
            with self._lock:
                self._pending -= sum(len(b.rows) for b in batches)

    def _write(self, batches: list[LogBatch]) -> None:
        by_day: dict[str, list[str]] = {}
        for batch in batches:
            stamp = dt.datetime.fromtimestamp(batch.at, dt.UTC)
            by_day.setdefault(stamp.strftime("%Y-%m-%d"), []).extend(_log_lines(batch, stamp))
        for day, lines in by_day.items():
            with open(self.folder / f"{day}.jsonl", "a", encoding="utf-8") as fh:
                fh.write("".join(lines))


def _log_lines(batch: LogBatch, stamp: dt.datetime) -> Iterator[str]:
    when = stamp.isoformat(timespec="microseconds")
    for k, row in enumerate(batch.rows.tolist()):
        t = batch.txns[row]
        arm = batch.arm if isinstance(batch.arm, str) else batch.arm[k]
        version = batch.version if isinstance(batch.version, str) else batch.version[k]
        columns = batch.columns[k] if isinstance(batch.columns, list) else batch.columns
        values = batch.features[k] if isinstance(batch.features, list) else batch.features[k]
        score = float(batch.scores[k])
        record = {
            "timestamp": when,
            "request_id": batch.request_id,
            "transaction_id": t.transaction_id,
            "customer_id": t.customer_id,
            "merchant_id": t.merchant_id,
            "request": {"amount": t.amount, "channel": t.channel, "card_present": t.card_present,
                        "event_hour": batch.hours[row],
                        "event_timestamp": t.event_timestamp.isoformat() if t.event_timestamp else None},
            "features": {c: (None if math.isnan(v) else v) for c, v in zip(columns, values.tolist(),
                                                                          strict=True)},
            "score": score,
            "decision": "flag" if score >= batch.threshold else "approve",
            "model_name": batch.model_name,
            "model_version": version,
            "arm": arm,
        }
        yield json.dumps(record, separators=(",", ":")) + "\n"


# --- the service -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """What requests score with; replaced as a whole, never changed in place."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None


class ScoringService:
    """Everything behind the routes: state, scoring, and the background threads."""

    def __init__(self, settings: Settings, params: ServingParams) -> None:
        self.settings = settings
        self.params = params
        self.threshold = settings.params.train.decision_threshold
        self.model_name = settings.params.train.registered_model_name
        self.parser = RequestParser(settings, params)
        self.metrics = Metrics()
        self.models = Models()
        self.store: StoreHandle | None = None
        self.store_error: str | None = "feature store not opened yet"
        self.model_error: str | None = "model not loaded yet"
        self.log = PredictionLog(prediction_log.log_folder(settings), self.metrics, params.log_queue_rows)
        self._shadow: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failed: dict[str, tuple[str, float]] = {}  # alias -> (version whose load failed, when)

    # -- lifecycle

    def start(self) -> None:
        """Background threads; the first load happens on the reloader thread (see /ready)."""
        if self.params.log_predictions:
            self.log.start()
        self._spawn(self._reload_loop, "glue-serve-reloader")
        if self.params.mode == SHADOW:
            self._spawn(self._shadow_loop, "glue-serve-shadow")

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            with contextlib.suppress(queue.Full):
                self._shadow.put_nowait(())
        for thread in self._threads:
            thread.join(timeout=30)
        self.log.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- readiness

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        models = self.models
        reasons = [r for r in (self.model_error if models.champion is None else None, self.store_error) if r]
        info: dict[str, Any] = {"model": self.model_name,
                                "version": models.champion.version if models.champion else None,
                                "mode": self.params.mode}
        if models.challenger is not None:
            info["challenger_version"] = models.challenger.version
        if reasons:
            return False, {"status": "not ready", "reason": "; ".join(reasons), **info}
        return True, {"status": "ready", **info}

    # -- the hot path

    def predict(self, body: bytes, request_id: str) -> dict[str, Any]:
        """Validate, read features once, score, answer; the log line is written later."""
        txns = self.parser.parse(body)
        models = self.models  # this request's models, whatever the reloader does meanwhile
        champion = models.champion
        handle = self.store
        if champion is None:
            raise _unavailable(f"no model loaded: {self.model_error or 'loading'}")
        if handle is None:
            raise _unavailable(f"feature store unavailable: {self.store_error or 'opening'}")
        hours = [event_hour(t) for t in txns]
        arms = self._arms(txns, models)
        served = {CHAMPION: champion, CHALLENGER: models.challenger}
        services = {(served[a] or champion).feature_service for a in set(arms)}
        reads = {s: self._read(handle, s, txns, hours) for s in sorted(services)}
        primary = reads.get(champion.feature_service) or next(iter(reads.values()))
        if primary.unknown and self.params.unknown_entities == "reject":
            row, key, value = primary.unknown[0]
            raise ServingError(422, "RESOURCE_DOES_NOT_EXIST", f"unknown {key} {value}: no features in the "
                               f"online store (transactions[{row}].{key})", f"transactions[{row}].{key}")

        n = len(txns)
        scores = np.empty(n)
        versions: list[str] = [champion.version] * n
        now = time.time()
        log_parts = []
        for arm in sorted(set(arms)):
            model = served[arm] or champion
            rows = np.arange(n) if len(set(arms)) == 1 else np.flatnonzero(np.array(arms) == arm)
            x = reads[model.feature_service].matrix(model.columns, rows)
            scores[rows] = model.predict(x)
            for r in rows.tolist():
                versions[r] = model.version
            log_parts.append((rows, arm, model, x))
        decisions = ["flag" if s >= self.threshold else "approve" for s in scores.tolist()]

        self._after_answer(request_id, txns, hours, log_parts, scores, now, primary, models)
        return {
            "request_id": request_id,
            "model": {"name": champion.name, "version": champion.version, "alias": champion.alias},
            "threshold": self.threshold,
            "predictions": [
                {"transaction_id": t.transaction_id, "score": s, "decision": d, "arm": a,
                 "model_version": v}
                for t, s, d, a, v in zip(txns, scores.tolist(), decisions, arms, versions, strict=True)
            ],
            "feature_freshness": _freshness(primary.oldest, now),
        }

    def _arms(self, txns: list[Any], models: Models) -> list[str]:
        if self.params.mode != "ab" or models.challenger is None:
            return [CHAMPION] * len(txns)
        weight = self.params.challenger_weight
        return [ab_arm(t.customer_id, weight) for t in txns]

    def _read(self, handle: StoreHandle, service: str, txns: list[Any], hours: list[int]) -> OnlineRead:
        try:
            read = handle.reader(service).read(_entity_rows(txns, hours))
        except Exception as exc:  # the store is down, unreadable or misconfigured: not the client's fault
            reason = f"{type(exc).__name__}: {exc}".strip()[:500]
            if self.store_error is None:
                log.warning("feature store read failed: %s", reason)
            self.store_error = f"feature store read failed: {reason}"
            raise _unavailable(self.store_error) from None
        if self.store_error is not None:
            log.warning("feature store reads work again")
            self.store_error = None
        return read

    def _after_answer(self, request_id: str, txns: list[Any], hours: list[int], parts: list[Any],
                      scores: np.ndarray, now: float, primary: OnlineRead, models: Models) -> None:
        """Metrics, the prediction log and the shadow job: cheap enqueues, no I/O."""
        m = self.metrics
        for rows, arm, _, _ in parts:
            m.predictions.labels(arm=arm).inc(len(rows))
        flagged = int(np.count_nonzero(scores >= self.threshold))
        if flagged:
            m.flagged.inc(flagged)
        for view, ts in primary.oldest.items():
            m.feature_age.labels(view=view).set(now - ts)
        if self.params.log_predictions:
            for rows, arm, model, x in parts:
                self.log.submit(LogBatch(at=now, request_id=request_id, model_name=model.name, txns=txns,
                                         hours=hours, rows=rows, arm=arm, version=model.version,
                                         columns=model.columns, features=x, scores=scores[rows],
                                         threshold=self.threshold))
        if self.params.mode == SHADOW and models.challenger is not None:
            try:
                self._shadow.put_nowait((request_id, txns, hours, primary, models, now))
            except queue.Full:
                m.shadow_dropped.inc(len(txns))

    # -- background: shadow scoring

    def _shadow_loop(self) -> None:
        while not self._stop.is_set():
            job = self._shadow.get()
            if not job:
                continue
            request_id, txns, hours, primary, models, at = job
            try:
                self._score_shadow(request_id, txns, hours, primary, models, at)
            except Exception as exc:
                log.warning("shadow scoring of request %s failed: %s", request_id, exc)

    def _score_shadow(self, request_id: str, txns: list[Any], hours: list[int], primary: OnlineRead,
                      models: Models, at: float) -> None:
        challenger, champion = models.challenger, models.champion
        assert challenger is not None and champion is not None
        read = primary
        if challenger.feature_service != champion.feature_service and self.store is not None:
            read = self.store.reader(challenger.feature_service).read(_entity_rows(txns, hours))
        rows = np.arange(len(txns))
        x = read.matrix(challenger.columns)
        scores = challenger.predict(x)
        self.metrics.predictions.labels(arm=SHADOW).inc(len(txns))
        if self.params.log_predictions:
            self.log.submit(LogBatch(at=at, request_id=request_id, model_name=challenger.name, txns=txns,
                                     hours=hours, rows=rows, arm=SHADOW, version=challenger.version,
                                     columns=challenger.columns, features=x, scores=scores,
                                     threshold=self.threshold))

    # -- background: reloads

    def _reload_loop(self) -> None:
        from glue import tracking

        tracking.configure(self.settings)
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.params.poll_seconds)

    def poll_once(self) -> None:
        """One round of the reloader: store first (models are checked against it), then aliases."""
        self._ensure_store()
        handle = self.store
        if handle is None:
            return
        aliases = [(CHAMPION, self.params.champion_alias)]
        if self.params.mode != "off":
            aliases.append((CHALLENGER, self.params.challenger_alias))
        for slot, alias in aliases:
            self._reload(slot, alias, handle)
        ready, _ = self.readiness()
        self.metrics.ready.set(1 if ready else 0)

    def _ensure_store(self) -> None:
        handle = self.store
        try:
            if handle is None or self.store_error is not None:
                fresh = open_store(self.settings)
                if handle is not None:
                    self._probe(fresh)  # the old one failed: use the new one only if it reads
                self.store, self.store_error = fresh, None
                log.info("feature store opened (%s)", fresh.store.config.online_store.type)
            else:
                handle.store.refresh_registry()  # here, so no request pays for an expired cache
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()[:500]
            if handle is None:
                self.store_error = f"cannot open the feature store: {reason}"
            log.warning("feature store: %s", reason)

    def _probe(self, handle: StoreHandle) -> None:
        champion = self.models.champion
        service = champion.feature_service if champion else self.settings.params.features.feature_service
        probe = self.parser.model(customer_id=0, merchant_id=0, amount=1.0, channel=self.parser.channels[0],
                                  card_present=True, event_hour=0)
        handle.reader(service).read(_entity_rows([probe], [0]))

    def _reload(self, slot: str, alias: str, handle: StoreHandle) -> None:
        from glue import feature_store, tracking

        current: ServedModel | None = getattr(self.models, slot)
        try:
            ref = tracking.get_alias(self.model_name, alias)
        except Exception as exc:
            log.warning("registry unreachable, keeping %s: %s", _describe(current), exc)
            if current is None:
                self.model_error = f"registry unreachable: {exc}"
            return
        if ref is None:
            if slot == CHAMPION and current is None:
                self.model_error = f"registered model '{self.model_name}' has no alias '{alias}'"
            elif slot == CHALLENGER and current is not None:
                self.models = replace(self.models, challenger=None)
            return
        if current is not None and current.version == ref.version:
            return
        failed = self._failed.get(alias)
        if failed and failed[0] == ref.version and time.monotonic() - failed[1] < _RETRY_FAILED_SECONDS:
            return  # the same version failed a moment ago: retry it later, not on every poll
        started = time.perf_counter()
        try:
            loaded = _load_version(self.settings, ref, alias, handle.store, feature_store, tracking)
            handle.reader(loaded.feature_service)
        except Exception as exc:
            self.metrics.reloads.labels(alias=alias, result="failed").inc()
            if not failed or failed[0] != ref.version:
                log.error("could not load %s version %s (alias %s), keeping %s: %s", self.model_name,
                          ref.version, alias, _describe(current), exc)
            self._failed[alias] = (ref.version, time.monotonic())
            if current is None:
                self.model_error = f"loading version {ref.version} failed: {exc}"
            return
        self.models = replace(self.models, **{slot: loaded})  # the swap: one reference
        self._failed.pop(alias, None)
        if slot == CHAMPION:
            self.model_error = None
        self.metrics.reloads.labels(alias=alias, result="ok").inc()
        self.metrics.model_version.labels(model=self.model_name, alias=alias).set(float(loaded.version))
        log.warning("serving %s version %s as %s (was %s; loaded in %.1f s, %s scoring path)",
                    self.model_name, loaded.version, alias, _describe(current),
                    time.perf_counter() - started, loaded.scoring_path)


def _describe(model: ServedModel | None) -> str:
    return f"version {model.version}" if model else "no model"


def _freshness(oldest: dict[str, int], now: float) -> dict[str, dict[str, Any]]:
    return {
        view: {"event_timestamp": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(),
               "age_seconds": round(now - ts, 3)}
        for view, ts in oldest.items()
    }


# --- the app ---------------------------------------------------------------------------------------


class _Observe:
    """Pure ASGI middleware: request count by status and latency per route (cheaper than BaseHTTP)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        status = 500
        start = time.perf_counter()
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                self.metrics.requests.labels(route=route, status=str(status)).inc()
                self.metrics.latency.labels(route=route).observe(time.perf_counter() - start)

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()  # before the last byte leaves: a client that reads /metrics next sees it
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            observe()  # the app failed before answering


def create_app(settings: Settings, params: ServingParams | None = None) -> FastAPI:
    """The scoring app; models and the Feast store load in the background after startup."""
    from starlette.concurrency import run_in_threadpool

    service = ScoringService(settings, params or serving_params(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="glue fraud scoring", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(_Observe, metrics=service.metrics)
    limit = service.params.max_body_bytes

    async def predict(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            body = await _read_body(request, limit)
            answer = await run_in_threadpool(service.predict, body, request_id)
        except ServingError as err:
            service.metrics.errors.labels(code=err.code).inc()
            return JSONResponse(err.body(request_id), status_code=err.status,
                                headers={"x-request-id": request_id})
        except Exception as exc:
            log.exception("request %s failed", request_id)
            service.metrics.errors.labels(code="INTERNAL_ERROR").inc()
            return JSONResponse({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}",
                                 "request_id": request_id}, status_code=500)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json",
                        headers={"x-request-id": request_id})

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def ready() -> JSONResponse:
        ok, body = service.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def version() -> dict[str, Any]:
        _, body = service.readiness()
        return {k: v for k, v in body.items() if k not in ("status", "reason")}

    async def metrics() -> Response:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    for path in ("/predict", "/invocations"):
        app.add_api_route(path, predict, methods=["POST"], include_in_schema=False)
    for path in ("/health", "/ping"):
        app.add_api_route(path, health, methods=["GET"])
    app.add_api_route("/ready", ready, methods=["GET"])
    app.add_api_route("/version", version, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (checked on the header and while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _bad(f"request body is {int(declared)} bytes, at most {limit}", "body", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _bad(f"request body is over {limit} bytes", "body", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def app_from_env() -> FastAPI:
    """uvicorn factory (``glue.serving:app_from_env``): settings from the environment, per worker."""
    from glue.settings import get_settings

    return create_app(get_settings())


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app under uvicorn until interrupted (what `glue serve` does)."""
    import uvicorn

    serving_params(_settings())  # fail on a bad serving: section before uvicorn starts
    uvicorn.run("glue.serving:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


def _settings() -> Settings:
    from glue.settings import get_settings

    return get_settings()

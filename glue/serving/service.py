"""The scoring service: everything behind the routes, without the web framework.

Why a module of its own: as in MLflow's scoring server, the web app (glue/serving/app.py) only
moves bytes; this is where a request becomes an answer. One hop: the Feast ``FeatureStore`` is
opened once per process and read in-process (no Feast feature server between the client and the
models), and each model's version behind its ``champion`` alias is loaded once and kept in memory.
A request to one model is one Feast online read for all its rows, one scoring call per arm, and a
JSON answer; metrics, the prediction log and the shadow job are cheap enqueues after it.

Every model of the project is served by one process, each by an :class:`Endpoint` built once when
the service starts (its request schema once the Feast registry is readable): the hot path holds no
lookup by name and builds nothing per request but the answer.

Rows whose entities are unknown (no row in the online store for a join key) are rejected with 422
by default: scoring them with all-missing features gives a number nobody asked for. Set
``serving.unknown_entities: score`` to score them anyway (the features are then NaN, which the
model's imputer handles as in training).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from glue import prediction_log
from glue.contract import CHALLENGER, CHAMPION
from glue.errors import unreachable_service
from glue.scoring import BINARY
from glue.serving.metrics import Metrics
from glue.serving.prediction_writer import LogBatch, PredictionLog
from glue.serving.reloading import ModelState, Reloader, ServingState
from glue.serving.schema import ServingError, unavailable
from glue.serving.shadow import SHADOW, ShadowScorer, choose_arms

if TYPE_CHECKING:
    from glue.adapters.feast import OnlineRead
    from glue.serving.config import ServingParams
    from glue.serving.reloading import Models
    from glue.serving.schema import RequestSchema
    from glue.serving.store import StoreHandle
    from glue.settings import ModelSpec, Settings

log = logging.getLogger(__name__)


class ScoringService:
    """Everything behind the routes: every model's endpoint, the shared store and log, the threads."""

    def __init__(self, settings: Settings, params: dict[str, ServingParams]) -> None:
        self.settings = settings
        self.params = params
        self.metrics = Metrics()
        self.state = ServingState(models={name: ModelState(spec=settings.model(name), params=p)
                                          for name, p in params.items()})
        self.log = PredictionLog(prediction_log.log_folder(settings), self.metrics,
                                 max(p.log_queue_rows for p in params.values()))
        self.endpoints = {name: Endpoint(self, model) for name, model in self.state.models.items()}
        self.reloader = Reloader(settings, self.state, self.metrics)
        self._stop = threading.Event()
        self.first_round = threading.Event()  # set when the reloader's first round is over
        self._threads: list[threading.Thread] = []

    # -- lifecycle

    def start(self) -> None:
        """Background threads; the first loads happen on the reloader thread (see /ready)."""
        if any(p.log_predictions for p in self.params.values()):
            self.log.start()
        self._spawn(lambda: self.reloader.run(self._stop, self.first_round), "glue-serve-reloader")
        for name, endpoint in self.endpoints.items():
            if endpoint.params.mode == SHADOW:
                self._spawn(lambda e=endpoint: e.shadow.run(self._stop), f"glue-serve-shadow-{name}")

    def stop(self) -> None:
        """Stop the background threads and flush the prediction log."""
        self._stop.set()
        for endpoint in self.endpoints.values():
            endpoint.shadow.wake()
        for thread in self._threads:
            thread.join(timeout=30)
        self.log.stop()

    def poll_once(self) -> None:
        """One round of the reloader, now (the reloader thread does this every poll_seconds)."""
        self.reloader.poll_once()

    # -- readiness

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready?, the /ready body): every model's champion loaded and the feature store readable."""
        reasons = self.state.problems()
        models = {name: endpoint.info() for name, endpoint in self.endpoints.items()}
        if reasons:
            return False, {"status": "not ready", "reason": "; ".join(reasons), "models": models}
        return True, {"status": "ready", "models": models}

    # -- helpers

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


class Endpoint:
    """One model's route: its request schema, policy and state, and the hot path from body to answer."""

    def __init__(self, service: ScoringService, model: ModelState) -> None:
        spec: ModelSpec = model.spec
        self.name = spec.name
        self.model = model
        self.params = model.params
        self.state = service.state
        self.metrics = service.metrics
        self.log = service.log
        self.task = spec.task
        self.threshold = spec.decision_threshold if spec.task == BINARY else None
        self.shadow = ShadowScorer(model, service.state, service.metrics, service.log, self.threshold)
        m = service.metrics
        self._errors = m.errors
        self._flagged = m.flagged.labels(model=self.name)
        self._counted = {arm: m.predictions.labels(model=self.name, arm=arm)
                         for arm in (CHAMPION, CHALLENGER)}

    def info(self) -> dict[str, Any]:
        """This model on /ready and /version: versions served, policy, request fields, what is missing."""
        model = self.model
        champion, challenger = model.models.champion, model.models.challenger
        out: dict[str, Any] = {"ready": not model.problems() and self.state.store_error is None,
                               "task": self.task, "feature_service": model.spec.feature_service,
                               "version": champion.version if champion else None,
                               "alias": self.params.champion_alias, "mode": self.params.mode}
        if challenger is not None:
            out["challenger_version"] = challenger.version
        if model.schema is not None:
            out["request"] = model.schema.describe()
        if model.problems():
            out["reason"] = "; ".join(model.problems())
        return out

    # -- the hot path

    def predict(self, body: bytes, request_id: str) -> dict[str, Any]:
        """Validate, read features once, score, answer; the log line is written later."""
        state = self.state
        model = self.model
        schema = model.schema
        if schema is None:
            raise unavailable(f"{self.name}: {model.schema_error}")
        rows, listed = schema.parse(body)
        models = model.models  # this request's models, whatever the reloader does meanwhile
        champion = models.champion
        handle = state.store
        if champion is None:
            raise unavailable(f"{self.name}: no model loaded: {model.model_error or 'loading'}")
        if handle is None:
            raise unavailable(f"feature store unavailable: {state.store_error or 'opening'}")
        arms = choose_arms([schema.keys(r) for r in rows], models, self.params.mode,
                           self.params.challenger_weight)
        served = {CHAMPION: champion, CHALLENGER: models.challenger}
        entity_rows = schema.entity_rows(rows)
        distinct = set(arms)
        services = {(served[a] or champion).feature_service for a in distinct}
        reads = {s: self._read(handle, s, entity_rows) for s in sorted(services)}
        primary = reads.get(champion.feature_service) or next(iter(reads.values()))
        if primary.unknown and self.params.unknown_entities == "reject":
            row, key, value = primary.unknown[0]
            where = schema.field_name(row if listed else None, key)
            raise ServingError(422, "RESOURCE_DOES_NOT_EXIST", f"unknown {key} {value}: no features in the "
                               f"online store ({where})", where)

        n = len(rows)
        outputs = np.empty(n)
        versions: list[str] = [champion.version] * n
        now = time.time()
        log_parts = []
        for arm in sorted(distinct):
            scorer = served[arm] or champion
            index = np.arange(n) if len(distinct) == 1 else np.flatnonzero(np.array(arms) == arm)
            x = reads[scorer.feature_service].matrix(scorer.columns, index)
            outputs[index] = scorer.predict(x)
            if len(distinct) > 1:
                for r in index.tolist():
                    versions[r] = scorer.version
            log_parts.append((index, arm, scorer, x))

        self._after_answer(request_id, rows, log_parts, outputs, now, primary, models)
        answer: dict[str, Any] = {
            "request_id": request_id,
            "model": {"name": champion.name, "version": champion.version, "alias": champion.alias},
        }
        if self.threshold is not None:
            answer["threshold"] = self.threshold
        answer["predictions"] = self._predictions(schema, rows, outputs.tolist(), arms, versions)
        answer["feature_freshness"] = _freshness(primary.oldest, now)
        return answer

    def _predictions(self, schema: RequestSchema, rows: list[dict[str, Any]], outputs: list[float],
                     arms: list[str], versions: list[str]) -> list[dict[str, Any]]:
        """One answer per row: the event id if given, score and decision or the prediction, arm, version."""
        event_id = schema.event_id
        threshold = self.threshold
        out = []
        for row, value, arm, version in zip(rows, outputs, arms, versions, strict=True):
            item: dict[str, Any] = {}
            if event_id is not None and row.get(event_id) is not None:
                item[event_id] = row[event_id]
            if threshold is None:
                item["prediction"] = value
            else:
                item["score"] = value
                item["decision"] = "flag" if value >= threshold else "approve"
            item["arm"] = arm
            item["model_version"] = version
            out.append(item)
        return out

    def _read(self, handle: StoreHandle, service: str, entity_rows: list[dict[str, Any]]) -> OnlineRead:
        state = self.state
        try:
            read = handle.reader(service).read(entity_rows)
        except Exception as exc:  # the store is down, unreadable or misconfigured: not the client's fault
            reason = (unreachable_service(exc) or f"{type(exc).__name__}: {exc}").strip()[:500]
            if state.store_error is None:
                log.warning("feature store read failed: %s", reason)
            state.store_error = f"feature store read failed: {reason}"
            raise unavailable(state.store_error) from None
        if state.store_error is not None:
            log.warning("feature store reads work again")
            state.store_error = None
        return read

    def _after_answer(self, request_id: str, rows: list[dict[str, Any]], parts: list[Any],
                      outputs: np.ndarray, now: float, primary: OnlineRead, models: Models) -> None:
        """Metrics, the prediction log and the shadow job: cheap enqueues, no I/O."""
        for index, arm, _, _ in parts:
            self._counted[arm].inc(len(index))
        if self.threshold is not None:
            flagged = int(np.count_nonzero(outputs >= self.threshold))
            if flagged:
                self._flagged.inc(flagged)
        for view, ts in primary.oldest.items():
            self.metrics.feature_age.labels(model=self.name, view=view).set(now - ts)
        if self.params.log_predictions:
            for index, arm, scorer, x in parts:
                threshold = self.threshold if scorer.task == BINARY else None
                self.log.submit(LogBatch(at=now, request_id=request_id, model_name=scorer.name, requests=rows,
                                         rows=index, arm=arm, version=scorer.version, columns=scorer.columns,
                                         features=x, outputs=outputs[index], threshold=threshold))
        if self.params.mode == SHADOW and models.challenger is not None:
            self.shadow.submit(request_id, rows, primary, models, now)

    def count_error(self, code: str) -> None:
        self._errors.labels(model=self.name, code=code).inc()


def _freshness(oldest: dict[str, int], now: float) -> dict[str, dict[str, Any]]:
    return {
        view: {"event_timestamp": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(),
               "age_seconds": round(now - ts, 3)}
        for view, ts in oldest.items()
    }

"""The scoring service: everything behind the routes, without the web framework.

Why a module of its own: as in MLflow's scoring server, the web app (glue/serving/app.py) only
moves bytes; this is where a request becomes an answer. One hop: the Feast ``FeatureStore`` is
opened once per process and read in-process (no Feast feature server between the client and the
model), and the model behind the registry alias ``champion`` is loaded once and kept in memory.
A request is one Feast online read for all its transactions, one ``predict_proba`` per model, and
a JSON answer; metrics, the prediction log and the shadow job are cheap enqueues after it.

Unknown customers or merchants (no row in the online store) are rejected with 422 by default:
scoring them with all-missing history features gives a number nobody asked for. Set
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
from glue.serving.metrics import Metrics
from glue.serving.prediction_writer import LogBatch, PredictionLog
from glue.serving.reloading import Models, Reloader, ServingState
from glue.serving.schema import RequestParser, ServingError, entity_rows, event_hour, unavailable
from glue.serving.shadow import SHADOW, ShadowScorer, choose_arms

if TYPE_CHECKING:
    from glue.feature_store import OnlineRead
    from glue.serving.config import ServingParams
    from glue.serving.store import StoreHandle
    from glue.settings import Settings

log = logging.getLogger(__name__)


class ScoringService:
    """Everything behind the routes: state, scoring, and the background threads."""

    def __init__(self, settings: Settings, params: ServingParams) -> None:
        self.settings = settings
        self.params = params
        self.threshold = settings.params.train.decision_threshold
        self.model_name = settings.params.train.registered_model_name
        self.parser = RequestParser(settings, params)
        self.metrics = Metrics()
        self.state = ServingState()
        self.log = PredictionLog(prediction_log.log_folder(settings), self.metrics, params.log_queue_rows)
        self.reloader = Reloader(settings, params, self.state, self.metrics, self._probe_row)
        self.shadow = ShadowScorer(params, self.state, self.metrics, self.log, self.threshold)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle

    def start(self) -> None:
        """Background threads; the first load happens on the reloader thread (see /ready)."""
        if self.params.log_predictions:
            self.log.start()
        self._spawn(lambda: self.reloader.run(self._stop), "glue-serve-reloader")
        if self.params.mode == SHADOW:
            self._spawn(lambda: self.shadow.run(self._stop), "glue-serve-shadow")

    def stop(self) -> None:
        """Stop the background threads and flush the prediction log."""
        self._stop.set()
        for _ in self._threads:
            self.shadow.wake()
        for thread in self._threads:
            thread.join(timeout=30)
        self.log.stop()

    def poll_once(self) -> None:
        """One round of the reloader, now (the reloader thread does this every poll_seconds)."""
        self.reloader.poll_once()

    # -- readiness

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready?, the /ready body): a champion loaded and the feature store readable."""
        models = self.state.models
        reasons = self.state.problems()
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
        state = self.state
        models = state.models  # this request's models, whatever the reloader does meanwhile
        champion = models.champion
        handle = state.store
        if champion is None:
            raise unavailable(f"no model loaded: {state.model_error or 'loading'}")
        if handle is None:
            raise unavailable(f"feature store unavailable: {state.store_error or 'opening'}")
        hours = [event_hour(t) for t in txns]
        arms = choose_arms(txns, models, self.params)
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

    def _read(self, handle: StoreHandle, service: str, txns: list[Any], hours: list[int]) -> OnlineRead:
        state = self.state
        try:
            read = handle.reader(service).read(entity_rows(txns, hours))
        except Exception as exc:  # the store is down, unreadable or misconfigured: not the client's fault
            reason = f"{type(exc).__name__}: {exc}".strip()[:500]
            if state.store_error is None:
                log.warning("feature store read failed: %s", reason)
            state.store_error = f"feature store read failed: {reason}"
            raise unavailable(state.store_error) from None
        if state.store_error is not None:
            log.warning("feature store reads work again")
            state.store_error = None
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
            self.shadow.submit(request_id, txns, hours, primary, models, now)

    # -- helpers

    def _probe_row(self) -> Any:
        """A valid transaction, for the reloader to check that a re-opened store reads."""
        return self.parser.model(customer_id=0, merchant_id=0, amount=1.0, channel=self.parser.channels[0],
                                 card_present=True, event_hour=0)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _freshness(oldest: dict[str, int], now: float) -> dict[str, dict[str, Any]]:
    return {
        view: {"event_timestamp": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(),
               "age_seconds": round(now - ts, 3)}
        for view, ts in oldest.items()
    }

"""Shadow and A/B: which arm answers a transaction, and the shadow scorer behind the answers.

Why a module of its own: the arm choice is a pure function (tested without a server), and the
shadow scorer runs on its own thread from a bounded queue: in ``shadow`` mode the ``challenger``
scores the same features as the champion and is logged with arm ``shadow``, never answered with;
when the worker falls behind, jobs are dropped and counted instead of slowing the answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
from typing import TYPE_CHECKING, Any

import numpy as np

from glue.contract import CHALLENGER, CHAMPION
from glue.serving.prediction_writer import LogBatch
from glue.serving.schema import entity_rows

if TYPE_CHECKING:
    import threading

    from glue.feature_store import OnlineRead
    from glue.serving.config import ServingParams
    from glue.serving.metrics import Metrics
    from glue.serving.prediction_writer import PredictionLog
    from glue.serving.reloading import Models, ServingState

log = logging.getLogger(__name__)

SHADOW = "shadow"  # the arm of a shadow scoring in the prediction log; never an answer


def ab_arm(customer_id: int, challenger_weight: float) -> str:
    """Deterministic A/B split: the same customer always lands in the same arm.

    sha256 of the id, first 8 bytes as a fraction of 2**64, compared with the weight: uniform,
    stable across processes and restarts (Python's hash() is salted per process).
    """
    digest = hashlib.sha256(str(int(customer_id)).encode()).digest()
    return CHALLENGER if int.from_bytes(digest[:8], "big") / 2.0**64 < challenger_weight else CHAMPION


def choose_arms(txns: list[Any], models: Models, params: ServingParams) -> list[str]:
    """The arm answering each transaction: the champion, unless mode `ab` has a challenger."""
    if params.mode != "ab" or models.challenger is None:
        return [CHAMPION] * len(txns)
    weight = params.challenger_weight
    return [ab_arm(t.customer_id, weight) for t in txns]


class ShadowScorer:
    """Scores the challenger beside the champion on a worker thread, for the prediction log only."""

    def __init__(self, params: ServingParams, state: ServingState, metrics: Metrics,
                 log_writer: PredictionLog, threshold: float) -> None:
        self.params = params
        self.state = state
        self.metrics = metrics
        self.log = log_writer
        self.threshold = threshold
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=64)

    def submit(self, request_id: str, txns: list[Any], hours: list[int], primary: OnlineRead, models: Models,
               at: float) -> None:
        """Queue one answered request for shadow scoring (dropped and counted when the queue is full)."""
        try:
            self._queue.put_nowait((request_id, txns, hours, primary, models, at))
        except queue.Full:
            self.metrics.shadow_dropped.inc(len(txns))

    def wake(self) -> None:
        """Unblock the worker so it sees the stop event."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(())

    def run(self, stop: threading.Event) -> None:
        """The worker thread's body: score queued requests until `stop` is set."""
        while not stop.is_set():
            job = self._queue.get()
            if not job:
                continue
            request_id, txns, hours, primary, models, at = job
            try:
                self._score(request_id, txns, hours, primary, models, at)
            except Exception as exc:
                log.warning("shadow scoring of request %s failed: %s", request_id, exc)

    def _score(self, request_id: str, txns: list[Any], hours: list[int], primary: OnlineRead,
               models: Models, at: float) -> None:
        challenger, champion = models.challenger, models.champion
        assert challenger is not None and champion is not None
        read = primary
        store = self.state.store
        if challenger.feature_service != champion.feature_service and store is not None:
            read = store.reader(challenger.feature_service).read(entity_rows(txns, hours))
        rows = np.arange(len(txns))
        x = read.matrix(challenger.columns)
        scores = challenger.predict(x)
        self.metrics.predictions.labels(arm=SHADOW).inc(len(txns))
        if self.params.log_predictions:
            self.log.submit(LogBatch(at=at, request_id=request_id, model_name=challenger.name, txns=txns,
                                     hours=hours, rows=rows, arm=SHADOW, version=challenger.version,
                                     columns=challenger.columns, features=x, scores=scores,
                                     threshold=self.threshold))

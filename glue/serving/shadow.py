"""Shadow and A/B: which arm answers a request row, and the shadow scorer behind the answers.

Why a module of its own: the arm choice is a pure function (tested without a server), and the
shadow scorer runs on its own thread from a bounded queue: in ``shadow`` mode a model's
``challenger`` scores the same features as its champion and is logged with arm ``shadow``, never
answered with; when the worker falls behind, jobs are dropped and counted instead of slowing the
answers. Each model has its own policy (``models.<name>.serving.mode``) and its own scorer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glue.contract import CHALLENGER, CHAMPION
from glue.scoring import BINARY
from glue.serving.prediction_writer import LogBatch

if TYPE_CHECKING:
    import threading

    from glue.adapters.feast import OnlineRead
    from glue.serving.metrics import Metrics
    from glue.serving.prediction_writer import PredictionLog
    from glue.serving.reloading import Models, ModelState, ServingState

log = logging.getLogger(__name__)

SHADOW = "shadow"  # the arm of a shadow scoring in the prediction log; never an answer


def ab_arm(keys: Sequence[Any], challenger_weight: float) -> str:
    """Deterministic A/B split: the same entity (its join-key values) always lands in the same arm.

    sha256 of the values (joined by a unit separator; one integer key hashes as its decimal
    digits), first 8 bytes as a fraction of 2**64, compared with the weight: uniform, stable
    across processes and restarts (Python's hash() is salted per process).
    """
    text = "\x1f".join(str(int(v)) if isinstance(v, bool | int) else str(v) for v in keys)
    digest = hashlib.sha256(text.encode()).digest()
    return CHALLENGER if int.from_bytes(digest[:8], "big") / 2.0**64 < challenger_weight else CHAMPION


def choose_arms(keys: list[tuple[Any, ...]], models: Models, mode: str, weight: float) -> list[str]:
    """The arm answering each row (by its join-key values): the champion, unless `ab` has a challenger."""
    if mode != "ab" or models.challenger is None:
        return [CHAMPION] * len(keys)
    return [ab_arm(k, weight) for k in keys]


class ShadowScorer:
    """Scores one model's challenger beside its champion on a worker thread, for the prediction log only."""

    def __init__(self, model: ModelState, state: ServingState, metrics: Metrics, log_writer: PredictionLog,
                 threshold: float | None) -> None:
        self.model = model
        self.state = state
        self.metrics = metrics
        self.log = log_writer
        self.threshold = threshold
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=64)

    def submit(self, request_id: str, rows: list[dict[str, Any]], primary: OnlineRead, models: Models,
               at: float) -> None:
        """Queue one answered request for shadow scoring (dropped and counted when the queue is full)."""
        try:
            self._queue.put_nowait((request_id, rows, primary, models, at))
        except queue.Full:
            self.metrics.shadow_dropped.labels(model=self.model.spec.name).inc(len(rows))

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
            request_id, rows, primary, models, at = job
            try:
                self._score(request_id, rows, primary, models, at)
            except Exception as exc:
                log.warning("shadow scoring of request %s failed: %s", request_id, exc)

    def _score(self, request_id: str, rows: list[dict[str, Any]], primary: OnlineRead, models: Models,
               at: float) -> None:
        challenger, champion = models.challenger, models.champion
        assert challenger is not None and champion is not None
        read = primary
        store = self.state.store
        schema = self.model.schema
        other_service = challenger.feature_service != champion.feature_service
        if other_service and store is not None and schema is not None:
            read = store.reader(challenger.feature_service).read(schema.entity_rows(rows))
        x = read.matrix(challenger.columns)
        outputs = challenger.predict(x)
        self.metrics.predictions.labels(model=challenger.name, arm=SHADOW).inc(len(rows))
        if self.model.params.log_predictions:
            threshold = self.threshold if challenger.task == BINARY else None
            self.log.submit(LogBatch(at=at, request_id=request_id, model_name=challenger.name, requests=rows,
                                     rows=np.arange(len(rows)), arm=SHADOW, version=challenger.version,
                                     columns=challenger.columns, features=x, outputs=outputs,
                                     threshold=threshold))

"""The prediction log writer: one JSON line per answered row, off the request thread.

Why a module of its own: the format is glue/prediction_log.py's (which monitoring reads); writing
it from a bounded queue on a background thread is the server's business, so a slow disk drops and
counts lines instead of slowing the answers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from glue.serving.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogBatch:
    """Predictions of one request (or its shadow scoring) by one model version, formatted by the writer.

    `threshold` is the model's decision threshold (binary classification: the line has ``score`` and
    ``decision``); None for a regression (the line has ``prediction``).
    """

    at: float  # epoch seconds
    request_id: str
    model_name: str
    requests: list[dict[str, Any]]  # the validated request rows (field -> value)
    rows: np.ndarray  # which request rows these are
    arm: str
    version: str
    columns: tuple[str, ...]
    features: np.ndarray  # one row per entry of `rows`, in `columns` order
    outputs: np.ndarray  # the model's answer per entry of `rows`
    threshold: float | None


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
    columns = batch.columns
    threshold = batch.threshold
    for k, row in enumerate(batch.rows.tolist()):
        output = float(batch.outputs[k])
        record = {
            "timestamp": when,
            "request_id": batch.request_id,
            "model_name": batch.model_name,
            "model_version": batch.version,
            "arm": batch.arm,
            "request": {f: _plain(v) for f, v in batch.requests[row].items()},
            "features": {c: (None if math.isnan(v) else v)
                         for c, v in zip(columns, batch.features[k].tolist(), strict=True)},
        }
        if threshold is None:
            record["prediction"] = output
        else:
            record["score"] = output
            record["decision"] = "flag" if output >= threshold else "approve"
        yield json.dumps(record, separators=(",", ":")) + "\n"


def _plain(value: Any) -> Any:
    """A request value as JSON: date-times in ISO-8601, the rest as given."""
    return value.isoformat() if isinstance(value, dt.datetime) else value

"""The prediction log of `glue serve`, as the monitoring reads it.

Why a module of its own: the server writes it (glue/serving/) and the daily check reads it
(glue/monitor.py); neither should import the other (the server must not load Evidently, the check
must not load FastAPI). The format is one JSON object per scored request row, appended to
``<state_dir>/predictions/YYYY-MM-DD.jsonl`` by the UTC day it was logged:

    {"timestamp", "request_id", "model_name", "model_version",
     "arm": "champion" | "challenger" | "shadow",
     "request": {every field of the request row (the feature service's join keys and request
                 fields, the event id if given), date-times in ISO-8601},
     "features": {column: value or null},
     "score": P(positive) and "decision" (binary classification) | "prediction": the value (regression)}

Several models log to the same files; each line names its model, and its request fields are that
model's request schema (glue/serving/schema.py, derived from its feature service). What the model was actually
given online is what drift should be measured on: a feature that the online store serves stale
or wrong shows up here and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from glue.contract import CHAMPION, PREDICTION_COLUMN

if TYPE_CHECKING:
    import pandas as pd

    from glue.settings import Settings

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"  # under settings.state_dir
EVENT_TIMESTAMP = "event_timestamp"


def log_folder(settings: Settings) -> Path:
    return settings.state_dir / PREDICTIONS_DIR


def read_served(settings: Settings, start: dt.date, end: dt.date, model_name: str, model_version: str,
                arm: str = CHAMPION, prediction: str = PREDICTION_COLUMN) -> pd.DataFrame:
    """Predictions version `model_version` of `model_name` answered (arm `arm`) for days [start, end).

    One row per logged prediction: the request's fields, ``event_timestamp``, the features the
    model got and its output (column `prediction`). A row belongs to the day of its event
    timestamp (the logging time when the request had none). Log files are named by the day of
    logging, which is never before the event: the files of `start` and every later day are read
    (for a daily check of yesterday, one or two files; a replay of old events reads what was
    logged since). Unreadable lines are skipped and counted in the log: a torn last line after a
    crash must not stop the check.
    """
    import pandas as pd

    folder = log_folder(settings)
    records: list[dict] = []
    feature_names: set[str] = set()
    bad = 0
    for path in sorted(folder.glob("*.jsonl")):  # an absent folder globs to nothing
        if path.stem < start.isoformat():
            continue
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if (record.get("model_name") != model_name or record.get("arm") != arm
                        or str(record.get("model_version")) != str(model_version)):
                    continue
                request = dict(record.get("request") or {})
                when = request.pop(EVENT_TIMESTAMP, None) or record.get("timestamp")
                values = record.get("features") or {}
                feature_names.update(values)
                output = record["score"] if "score" in record else record.get("prediction")
                records.append({**request, EVENT_TIMESTAMP: when, **values, prediction: output})
    if bad:
        log.warning("%s: skipped %d unreadable line(s)", folder, bad)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True, format="ISO8601")
    numbers = sorted(feature_names | {prediction})
    frame[numbers] = frame[numbers].apply(pd.to_numeric, errors="coerce")  # null -> NaN
    days = frame[EVENT_TIMESTAMP].dt.normalize()
    inside = (days >= pd.Timestamp(start, tz="UTC")) & (days < pd.Timestamp(end, tz="UTC"))
    return frame[inside].reset_index(drop=True)

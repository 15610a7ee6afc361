"""`glue score-batch`: score a day of validated events with a model's champion, offline.

Why offline features: a batch re-scores events after the fact (back-fills, audits, what the model
would have said), so each one must get the features it would have had at its own time. That is
Feast's point-in-time join on the offline store (glue.features.scoring_frame), the same join that
built the training set; the online store only knows "now".

What is scored follows the model's feature service: a service with request fields (an event-level
model) scores every event of the day, at its own time; a service without (an entity-level model)
scores every entity seen that day (its join keys), as of the end of the day.

Output: data/scores/<model>/<YYYY-MM-DD or all>.parquet: the event id and time, the join keys, the
answer (score and decision, or prediction), the model name and version; written atomically (a
reader never sees half a file). When the settings name a warehouse (``warehouse_uri``; on the prod
profile the PostgreSQL database of Feast's offline store), the same rows also go to the model's
table ``batch_scores_<model>``: the day's (or all) earlier rows are replaced in one transaction, so
re-scoring a day never duplicates it and a reader sees the old rows or the new ones, never a mix.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from glue import atomic, contract
from glue.errors import GlueError

if TYPE_CHECKING:
    import pandas as pd

    from glue.settings import ModelSpec, Settings

SCORES_DIR = "scores"  # under settings.data_dir
SCORES_TABLE = "batch_scores"  # in settings.warehouse_uri: batch_scores_<model>


@dataclass(frozen=True)
class BatchScoreResult:
    """What one batch scoring wrote."""

    path: Path
    table: str | None  # where the rows also went (warehouse_uri), None for files only
    day: dt.date | None
    rows: int
    flagged: int | None  # binary classification: rows at or above the threshold
    model_name: str
    model_version: str
    threshold: float | None
    seconds: float

    def summary(self) -> str:
        which = f"{self.day:%Y-%m-%d}" if self.day else "all days"
        flagged = ""
        if self.flagged is not None and self.threshold is not None:
            share = self.flagged / self.rows if self.rows else 0.0
            flagged = f": {self.flagged} flagged ({share:.2%}) at threshold {self.threshold:g}"
        return (f"scored {self.rows} rows of {which} with {self.model_name} version "
                f"{self.model_version} (champion){flagged}\nwrote {self.path}"
                + (f" and {self.table}" if self.table else "") + f" in {self.seconds:.1f} s")


def scores_table(model: str) -> str:
    """The warehouse table of one model's batch scores (a SQL-safe name)."""
    return f"{SCORES_TABLE}_" + "".join(c if c.isalnum() else "_" for c in model.lower())


def score_batch(settings: Settings, model: ModelSpec, day: dt.date | None = None,
                alias: str = contract.CHAMPION) -> BatchScoreResult:
    """Score the validated events of `day` (all days if None) with the model behind `alias`."""
    import numpy as np
    import pandas as pd

    from glue import training
    from glue.adapters import feast, mlflow
    from glue.features import EVENT_TIMESTAMP, read_events, scoring_frame

    start = time.perf_counter()
    mlflow.configure(settings)
    name = model.name
    ref = mlflow.get_alias(name, alias)
    if ref is None:
        raise GlueError(f"registered model '{name}' has no '{alias}' version; run "
                        f"`glue train --model {name}` "
                        "and `glue promote` first")
    columns = contract.feature_columns(ref.tags)
    if not columns:
        raise GlueError(f"{name} version {ref.version} has no tag {contract.FEATURE_COLUMNS}: it was not "
                        "trained by `glue train`, so its input columns are unknown")

    service = ref.tags.get(contract.FEATURE_SERVICE) or model.feature_service
    scored_model = model if service == model.feature_service else model.model_copy(
        update={"feature_service": service})  # a version trained on v1 scores on v1
    store = feast.open_store(settings)
    inputs = feast.service_inputs(store, service)
    rows = _day_rows(read_events(settings), day, settings)
    if not inputs.request_fields:  # an entity-level model: each entity of the day, at the day's end
        ends = rows[EVENT_TIMESTAMP].dt.tz_convert("UTC").dt.floor("D") + pd.Timedelta(days=1)
        rows = rows.assign(**{EVENT_TIMESTAMP: ends}).drop_duplicates([*inputs.join_keys, EVENT_TIMESTAMP])
        rows = rows[[*inputs.join_keys, EVENT_TIMESTAMP]]
    frame, _ = scoring_frame(settings, scored_model, rows, store)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GlueError(f"{name} version {ref.version} needs column(s) {', '.join(missing[:5])} that Feast "
                        f"feature service '{service}' does not provide")

    estimator = mlflow.load_sklearn_model(ref.uri)
    task = ref.tags.get(contract.TASK) or model.task
    predictions = training.predict(estimator, task, frame[columns].astype("float64"))
    keys = [c for c in (settings.params.data.event_id, EVENT_TIMESTAMP, *inputs.join_keys)
            if c and c in frame.columns]
    out = frame[list(dict.fromkeys(keys))].copy()
    threshold = model.decision_threshold
    flagged = None
    if task == training.BINARY:
        threshold = threshold if threshold is not None else 0.5
        out["score"] = predictions
        out["decision"] = np.where(predictions >= threshold, "flag", "approve")
        flagged = int((predictions >= threshold).sum())
    else:
        out["prediction"] = predictions
    out["model_name"] = name
    out["model_version"] = ref.version
    folder = settings.data_dir / SCORES_DIR / name
    path = folder / (f"{day:%Y-%m-%d}.parquet" if day else "all.parquet")
    atomic.write_with(path, lambda tmp: out.to_parquet(tmp, index=False))
    table = (write_table(out, settings.warehouse_uri, day, scores_table(name))
             if settings.warehouse_uri else None)
    return BatchScoreResult(path=path, table=table, day=day, rows=len(out), flagged=flagged,
                            model_name=name, model_version=ref.version, threshold=threshold,
                            seconds=time.perf_counter() - start)


def _day_rows(events: pd.DataFrame, day: dt.date | None, settings: Settings) -> pd.DataFrame:
    """The events of one UTC day (or all of them), refusing an empty selection."""
    from glue.features import EVENT_TIMESTAMP

    if day is None:
        return events
    days = events[EVENT_TIMESTAMP].dt.tz_convert("UTC").dt.date
    picked = events[days == day]
    if picked.empty:
        raise GlueError(f"no validated events on {day:%Y-%m-%d} in {settings.validated_events_dir} "
                        f"(they cover {days.min()} .. {days.max()})")
    return picked


def write_table(df: pd.DataFrame, uri: str, day: dt.date | None, name: str = SCORES_TABLE) -> str:
    """Replace the day's rows (all rows when `day` is None) of the scores table `name`, atomically."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.begin() as conn:  # one transaction: delete and insert commit together
            if sqlalchemy.inspect(conn).has_table(name):
                table = sqlalchemy.table(name, sqlalchemy.column("event_timestamp"))
                delete = sqlalchemy.delete(table)
                if day is not None:
                    start = dt.datetime.combine(day, dt.time(), dt.UTC)
                    delete = delete.where(table.c.event_timestamp >= start,
                                          table.c.event_timestamp < start + dt.timedelta(days=1))
                conn.execute(delete)
            df.to_sql(name, conn, if_exists="append", index=False, chunksize=10_000)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise GlueError(f"could not write the scores to table {name} in {where}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return f"{engine.url.database}.{name}"

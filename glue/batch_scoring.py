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

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from glue import atomic, contract
from glue.errors import GlueError

if TYPE_CHECKING:
    import pandas as pd

    from glue.settings import ModelSpec, Settings

SCORES_DIR = "scores"  # under settings.data_dir
SCORES_TABLE = "batch_scores"  # in settings.warehouse_uri: batch_scores_<model>
# Rows scored at a time: whole batch files up to about this many (features, predictions and output of
# one chunk in memory; the point-in-time join reads the snapshot tables once per chunk).
CHUNK_ROWS = 1_000_000


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
                alias: str = contract.CHAMPION, chunk_rows: int = CHUNK_ROWS) -> BatchScoreResult:
    """Score the validated events of `day` (all days if None) with the model behind `alias`.

    In chunks of at most `chunk_rows` rows (whole batch files): features, predictions and output of
    one chunk at a time, so memory stays flat however many days are scored. The model is loaded
    once; the parquet file and the warehouse table are replaced when the last chunk is written.
    """
    import numpy as np

    from glue import training
    from glue.adapters import feast, mlflow
    from glue.features import EVENT_TIMESTAMP, scoring_frame

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
    # the ray profile scores on the cluster (Ray Data actors, each loading the model once)
    on_ray = settings.ray is not None
    estimator = None if on_ray else mlflow.load_sklearn_model(ref.uri)
    task = ref.tags.get(contract.TASK) or model.task
    threshold = (model.decision_threshold if model.decision_threshold is not None else 0.5
                 ) if task == training.BINARY else model.decision_threshold

    def scored(rows: pd.DataFrame) -> pd.DataFrame:
        frame, _ = scoring_frame(settings, scored_model, rows, store)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise GlueError(f"{name} version {ref.version} needs column(s) {', '.join(missing[:5])} that "
                            f"Feast feature service '{service}' does not provide")
        if on_ray:
            from glue.adapters import ray

            load = partial(mlflow.load_sklearn_model, ref.uri)
            predictions = ray.score_frame(settings, frame[columns], load, training.predict, task)
        else:
            predictions = training.predict(estimator, task, frame[columns].astype("float64"))
        keys = [c for c in (settings.params.data.event_id, EVENT_TIMESTAMP, *inputs.join_keys)
                if c and c in frame.columns]
        out = frame[list(dict.fromkeys(keys))].copy()
        if task == training.BINARY:
            out["score"] = predictions
            out["decision"] = np.where(predictions >= threshold, "flag", "approve")
        else:
            out["prediction"] = predictions
        out["model_name"] = name
        out["model_version"] = ref.version
        return out

    chunks = (_event_chunks(settings, day, chunk_rows) if inputs.request_fields
              else _entity_chunks(settings, day, list(inputs.join_keys), chunk_rows))
    folder = settings.data_dir / SCORES_DIR / name
    path = folder / (f"{day:%Y-%m-%d}.parquet" if day else "all.parquet")
    if folder.is_dir():
        atomic.remove_leftovers(folder)  # of a scoring killed mid-write
    table_name = scores_table(name)
    rows = flagged = 0
    with atomic.replacing(path) as tmp, _ParquetParts(tmp) as parquet, \
            _replacing_rows(settings.warehouse_uri, day, table_name) as append:
        for chunk in chunks:
            out = scored(chunk)
            parquet.write(out)
            append(out)
            rows += len(out)
            if task == training.BINARY:
                flagged += int((out["decision"] == "flag").sum())
    table = f"{_database(settings.warehouse_uri)}.{table_name}" if settings.warehouse_uri else None
    return BatchScoreResult(path=path, table=table, day=day, rows=rows,
                            flagged=flagged if task == training.BINARY else None,
                            model_name=name, model_version=ref.version, threshold=threshold,
                            seconds=time.perf_counter() - start)


def _event_chunks(settings: Settings, day: dt.date | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The validated events of `day` (one chunk: glue.features.read_events of that day), or of all
    days, whole batch files at a time; each chunk in event order, the time column named
    event_timestamp; refuses an empty day."""
    import pandas as pd

    from glue.features import EVENT_TIMESTAMP, read_events

    if day is not None:
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        rows = read_events(settings, since=start, until=start + dt.timedelta(days=1))
        if rows.empty:
            _no_events(settings, day)
        yield rows
        return
    ts, event_id = settings.params.validation.timestamp_column, settings.params.data.event_id
    order = [EVENT_TIMESTAMP, *([event_id] if event_id else [])]
    pending: list[pd.DataFrame] = []
    size = 0
    for file in _batch_files(settings):
        pending.append(pd.read_parquet(file).rename(columns={ts: EVENT_TIMESTAMP}))
        size += len(pending[-1])
        if size >= chunk_rows:
            yield pd.concat(pending, ignore_index=True).sort_values(order, kind="stable")
            pending, size = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True).sort_values(order, kind="stable")


def _entity_chunks(settings: Settings, day: dt.date | None, join_keys: list[str],
                   chunk_rows: int) -> Iterator[pd.DataFrame]:
    """An entity-level model scores each entity seen on a day as of that day's end: the distinct
    (join keys, day end) rows of the selection, read column-wise, in chunks."""
    import pandas as pd

    from glue.features import EVENT_TIMESTAMP

    ts = settings.params.validation.timestamp_column
    parts = []
    for file in _batch_files(settings):
        df = pd.read_parquet(file, columns=[*join_keys, ts])
        days = df[ts].dt.tz_convert("UTC").dt.floor("D")
        if day is not None:
            keep = (days.dt.date == day).to_numpy()
            df, days = df[keep], days[keep]
        parts.append(df[join_keys].assign(**{EVENT_TIMESTAMP: days + pd.Timedelta(days=1)}))
    rows = pd.concat(parts, ignore_index=True).drop_duplicates().sort_values(
        [EVENT_TIMESTAMP, *join_keys], kind="stable").reset_index(drop=True)
    if rows.empty and day is not None:
        _no_events(settings, day)
    for begin in range(0, len(rows), chunk_rows):
        yield rows.iloc[begin:begin + chunk_rows]


def _batch_files(settings: Settings) -> list[Path]:
    folder = settings.validated_events_dir
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise GlueError(f"no validated batches in {folder}; run `glue validate-batches` first")
    return files


def _no_events(settings: Settings, day: dt.date) -> None:
    """Refuse a day without events, naming the days the batches do cover."""
    import pandas as pd

    ts = settings.params.validation.timestamp_column
    days = [pd.to_datetime(pd.read_parquet(f, columns=[ts])[ts], utc=True).dt.date
            for f in _batch_files(settings)]
    seen = pd.concat(days) if days else pd.Series(dtype="object")
    cover = f" (they cover {seen.min()} .. {seen.max()})" if len(seen) else ""
    raise GlueError(f"no validated events on {day:%Y-%m-%d} in {settings.validated_events_dir}{cover}")


class _ParquetParts:
    """One parquet file written a chunk at a time (a row group per chunk), every chunk in the
    first one's schema."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer, self.schema = path, None, None

    def __enter__(self) -> _ParquetParts:
        return self

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, schema=self.schema, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _replacing_rows(uri: str | None, day: dt.date | None, name: str
                    ) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Append chunks to table `name` inside one transaction that first deletes the day's rows (all
    rows when `day` is None): readers see the old rows or all the new ones. No uri: no table."""
    if not uri:
        yield lambda df: None
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.begin() as conn:  # one transaction: delete and every insert commit together
            if sqlalchemy.inspect(conn).has_table(name):
                table = sqlalchemy.table(name, sqlalchemy.column("event_timestamp"))
                delete = sqlalchemy.delete(table)
                if day is not None:
                    start = dt.datetime.combine(day, dt.time(), dt.UTC)
                    delete = delete.where(table.c.event_timestamp >= start,
                                          table.c.event_timestamp < start + dt.timedelta(days=1))
                conn.execute(delete)
            yield lambda df: df.to_sql(name, conn, if_exists="append", index=False, chunksize=10_000)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise GlueError(f"could not write the scores to table {name} in {where}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def _database(uri: str) -> str | None:
    import sqlalchemy

    return sqlalchemy.engine.make_url(uri).database


def write_table(df: pd.DataFrame, uri: str, day: dt.date | None, name: str = SCORES_TABLE) -> str:
    """Replace the day's rows (all rows when `day` is None) of the scores table `name`, atomically."""
    with _replacing_rows(uri, day, name) as append:
        append(df)
    return f"{_database(uri)}.{name}"

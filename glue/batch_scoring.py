"""`glue score-batch`: score a day of validated transactions with the champion, offline.

Why offline features: a batch re-scores transactions after the fact (back-fills, audits, what the
model would have said), so each one must get the features it would have had at its own time.
That is Feast's point-in-time join on the offline store (glue.features.scoring_frame), the same
join that built the training set; the online store only knows "now".

Output: data/scores/<YYYY-MM-DD or all>.parquet, one row per transaction, written atomically (a
reader never sees half a file). When the settings name a warehouse (``warehouse_uri``; on the prod
profile the PostgreSQL database of Feast's offline store), the same rows also go to its table
``batch_scores``: the day's (or all) earlier rows are replaced in one transaction, so re-scoring a
day never duplicates it and a reader sees the old rows or the new ones, never a mix.
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

    from glue.settings import Settings

SCORES_DIR = "scores"  # under settings.data_dir
SCORES_TABLE = "batch_scores"  # in settings.warehouse_uri
OUTPUT_COLUMNS = ("transaction_id", "event_timestamp", "customer_id", "merchant_id", "score", "decision",
                  "model_name", "model_version")


@dataclass(frozen=True)
class BatchScoreResult:
    """What one batch scoring wrote."""

    path: Path
    table: str | None  # where the rows also went (warehouse_uri), None for files only
    day: dt.date | None
    rows: int
    flagged: int
    model_name: str
    model_version: str
    threshold: float
    seconds: float

    def summary(self) -> str:
        which = f"{self.day:%Y-%m-%d}" if self.day else "all days"
        share = self.flagged / self.rows if self.rows else 0.0
        return (f"scored {self.rows} transactions of {which} with {self.model_name} version "
                f"{self.model_version} (champion): {self.flagged} flagged ({share:.2%}) at threshold "
                f"{self.threshold:g}\nwrote {self.path}" + (f" and {self.table}" if self.table else "")
                + f" in {self.seconds:.1f} s")


def score_batch(settings: Settings, day: dt.date | None = None,
                alias: str = contract.CHAMPION) -> BatchScoreResult:
    """Score the validated transactions of `day` (all days if None) with the model behind `alias`."""
    import numpy as np

    from glue import feature_store, tracking
    from glue.features import read_transactions, scoring_frame

    start = time.perf_counter()
    tracking.configure(settings)
    name = settings.params.train.registered_model_name
    ref = tracking.get_alias(name, alias)
    if ref is None:
        raise GlueError(f"registered model '{name}' has no '{alias}' version; run `glue train` and "
                        "`glue promote` first")
    columns = contract.feature_columns(ref.tags)
    if not columns:
        raise GlueError(f"{name} version {ref.version} has no tag {contract.FEATURE_COLUMNS}: it was not "
                        "trained by `glue train`, so its input columns are unknown")

    tx = _day_rows(read_transactions(settings), day, settings)
    service = ref.tags.get(contract.FEATURE_SERVICE) or settings.params.features.feature_service
    store = feature_store.open_store(settings)
    frame, _ = scoring_frame(_with_service(settings, service), tx, store)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GlueError(f"{name} version {ref.version} needs column(s) {', '.join(missing[:5])} that Feast "
                        f"feature service '{service}' does not provide")

    model = tracking.load_sklearn_model(ref.uri)
    scores = model.predict_proba(frame[columns].astype("float64"))[:, 1]
    threshold = settings.params.train.decision_threshold
    out = frame[["transaction_id", "event_timestamp", "customer_id", "merchant_id"]].copy()
    out["score"] = scores
    out["decision"] = np.where(scores >= threshold, "flag", "approve")
    out["model_name"] = name
    out["model_version"] = ref.version
    path = settings.data_dir / SCORES_DIR / f"{day:%Y-%m-%d}.parquet" if day else (
        settings.data_dir / SCORES_DIR / "all.parquet")
    out = out[list(OUTPUT_COLUMNS)]
    atomic.write_with(path, lambda tmp: out.to_parquet(tmp, index=False))
    table = write_table(out, settings.warehouse_uri, day) if settings.warehouse_uri else None
    return BatchScoreResult(path=path, table=table, day=day, rows=len(out),
                            flagged=int((scores >= threshold).sum()),
                            model_name=name, model_version=ref.version, threshold=threshold,
                            seconds=time.perf_counter() - start)


def _day_rows(tx: pd.DataFrame, day: dt.date | None, settings: Settings) -> pd.DataFrame:
    """The transactions of one UTC day (or all of them), refusing an empty selection."""
    if day is None:
        return tx
    days = tx["event_timestamp"].dt.tz_convert("UTC").dt.date
    picked = tx[days == day]
    if picked.empty:
        first, last = days.min(), days.max()
        folder = settings.validated_dir / "transactions"
        raise GlueError(f"no validated transactions on {day:%Y-%m-%d} in {folder} "
                        f"(they cover {first} .. {last})")
    return picked


def _with_service(settings: Settings, service: str) -> Settings:
    """The settings with the model's own feature service (a model trained on v1 scores on v1)."""
    if service == settings.params.features.feature_service:
        return settings
    features = settings.params.features.model_copy(update={"feature_service": service})
    return settings.model_copy(update={"params": settings.params.model_copy(update={"features": features})})


def write_table(df: pd.DataFrame, uri: str, day: dt.date | None) -> str:
    """Replace the day's rows (all rows when `day` is None) of the scores table, atomically."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.begin() as conn:  # one transaction: delete and insert commit together
            if sqlalchemy.inspect(conn).has_table(SCORES_TABLE):
                table = sqlalchemy.table(SCORES_TABLE, sqlalchemy.column("event_timestamp"))
                delete = sqlalchemy.delete(table)
                if day is not None:
                    start = dt.datetime.combine(day, dt.time(), dt.UTC)
                    delete = delete.where(table.c.event_timestamp >= start,
                                          table.c.event_timestamp < start + dt.timedelta(days=1))
                conn.execute(delete)
            df.to_sql(SCORES_TABLE, conn, if_exists="append", index=False, chunksize=10_000)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise GlueError(f"could not write the scores to table {SCORES_TABLE} in {where}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return f"{engine.url.database}.{SCORES_TABLE}"

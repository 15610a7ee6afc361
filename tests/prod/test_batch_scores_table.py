"""`glue score-batch` on prod writes its rows to a PostgreSQL table too (the running service)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from glue import batch_scoring
from glue.errors import GlueError
from tests import services

pytestmark = pytest.mark.prod


@pytest.fixture(scope="module")
def warehouse() -> str:
    """A database of this test run's own on the local PostgreSQL (tests/services.py), dropped at the end."""
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{services.create_database('warehouse')}"


def _scores(day: str, n: int, version: str) -> pd.DataFrame:
    ts = pd.date_range(f"{day} 00:30", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"transaction_id": [f"{day}-{i}" for i in range(n)], "event_timestamp": ts,
                         "customer_id": range(n), "merchant_id": range(n), "score": 0.1,
                         "decision": "approve", "model_name": "fraud-detector", "model_version": version})


def _table(uri: str) -> pd.DataFrame:
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        return pd.read_sql_table(batch_scoring.SCORES_TABLE, engine)
    finally:
        engine.dispose()


def test_a_rescored_day_replaces_its_rows_and_keeps_the_others(warehouse: str) -> None:
    batch_scoring.write_table(_scores("2026-03-01", 10, "1"), warehouse, dt.date(2026, 3, 1))
    batch_scoring.write_table(_scores("2026-03-02", 5, "1"), warehouse, dt.date(2026, 3, 2))
    where = batch_scoring.write_table(_scores("2026-03-01", 8, "2"), warehouse, dt.date(2026, 3, 1))

    assert where == f"{services.database('warehouse')}.{batch_scoring.SCORES_TABLE}"
    table = _table(warehouse)
    per_day = table.groupby(table["event_timestamp"].dt.date)["model_version"].agg(["count", "max"])
    assert per_day.loc[dt.date(2026, 3, 1)].tolist() == [8, "2"]  # replaced, not appended
    assert per_day.loc[dt.date(2026, 3, 2)].tolist() == [5, "1"]  # untouched


def test_an_unreachable_warehouse_is_a_clear_error() -> None:
    with pytest.raises(GlueError, match="could not write the scores to table batch_scores"):
        nowhere = f"postgresql+psycopg://postgres@127.0.0.1:5432/{services.database('never_created')}"
        batch_scoring.write_table(_scores("2026-03-01", 1, "1"), nowhere, None)

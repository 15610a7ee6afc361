"""The demo project's snapshot aggregates (feature_repo/transform.py, its `features.transform`) on
tiny hand-made frames, numbers worked out by hand.

Snapshot D (00:00 UTC) may use only transactions strictly before D, and only labels known at D.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from feature_repo import transform
from feature_repo.transform import customer_daily, merchant_daily
from glue import project_code
from glue.errors import GlueError
from glue.features import TransformInputs
from glue.settings import load_params

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _tx(rows: list[tuple]) -> pd.DataFrame:
    """Transactions as in the data contract from (id, time, customer, merchant, amount, channel, card)."""
    df = pd.DataFrame(
        rows,
        columns=["transaction_id", "event_timestamp", "customer_id", "merchant_id", "amount", "channel",
                 "card_present"],
    )
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["merchant_category"] = "grocery"
    return df.astype({"customer_id": "int64", "merchant_id": "int64", "amount": "float64"})


def _labels(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["transaction_id", "label_timestamp", "is_fraud"])
    df["label_timestamp"] = pd.to_datetime(df["label_timestamp"], utc=True)
    return df.astype({"is_fraud": "int64"})


def _row(table: pd.DataFrame, key: str, entity: int, snapshot: str) -> pd.Series:
    hit = table[(table[key] == entity) & (table["event_timestamp"] == pd.Timestamp(snapshot, tz="UTC"))]
    assert len(hit) == 1, f"expected one row for {key}={entity} at {snapshot}, got {len(hit)}"
    return hit.iloc[0]


CUSTOMER_TX = _tx(
    [
        ("t1", "2026-01-01 10:00:00", 1, 1, 10.0, "online", False),
        ("t2", "2026-01-01 23:59:59", 1, 1, 30.0, "in_store", True),
        ("t3", "2026-01-02 12:00:00", 1, 2, 20.0, "in_store", True),
        ("t4", "2026-01-09 00:00:00", 1, 3, 100.0, "atm", True),  # exactly at the 01-09 snapshot
        ("t5", "2026-01-01 08:00:00", 2, 1, 5.0, "in_store", True),
        ("t6", "2026-02-15 08:00:00", 3, 1, 5.0, "in_store", True),  # keeps the clock running
    ]
)


def test_first_snapshot_counts_the_previous_day() -> None:
    table = customer_daily(CUSTOMER_TX)
    row = _row(table, "customer_id", 1, "2026-01-02")
    assert row["txn_count_1d"] == 2
    assert row["txn_count_7d"] == 2
    assert row["txn_count_30d"] == 2
    assert row["amount_sum_1d"] == pytest.approx(40.0)
    assert row["amount_mean_30d"] == pytest.approx(20.0)
    assert row["amount_std_30d"] == pytest.approx(10.0)  # population std of 10 and 30
    assert row["amount_max_30d"] == pytest.approx(30.0)
    assert row["distinct_merchants_7d"] == 1
    assert row["online_share_30d"] == pytest.approx(0.5)
    assert row["card_not_present_share_30d"] == pytest.approx(0.5)
    assert row["hours_since_last_txn"] == pytest.approx(1 / 3600)


def test_windows_slide_day_by_day() -> None:
    table = customer_daily(CUSTOMER_TX)
    row = _row(table, "customer_id", 1, "2026-01-03")
    assert (row["txn_count_1d"], row["txn_count_7d"], row["txn_count_30d"]) == (1, 3, 3)
    assert row["amount_sum_1d"] == pytest.approx(20.0)
    assert row["amount_sum_7d"] == pytest.approx(60.0)
    assert row["distinct_merchants_7d"] == 2
    # 01-08 sees days 01-01 .. 01-07: the first day is still inside the 7-day window
    row = _row(table, "customer_id", 1, "2026-01-08")
    assert (row["txn_count_1d"], row["txn_count_7d"]) == (0, 3)
    # 01-09 sees 01-02 .. 01-08: the first day left the 7-day window, not the 30-day one
    row = _row(table, "customer_id", 1, "2026-01-09")
    assert (row["txn_count_1d"], row["txn_count_7d"], row["txn_count_30d"]) == (0, 1, 3)
    assert row["amount_sum_7d"] == pytest.approx(20.0)
    assert row["distinct_merchants_7d"] == 1


def test_a_transaction_at_midnight_belongs_to_the_next_snapshot_only() -> None:
    table = customer_daily(CUSTOMER_TX)
    before = _row(table, "customer_id", 1, "2026-01-09")
    assert before["amount_max_30d"] == pytest.approx(30.0)  # t4 (100.0) is not strictly before
    after = _row(table, "customer_id", 1, "2026-01-10")
    assert after["amount_max_30d"] == pytest.approx(100.0)
    assert after["txn_count_1d"] == 1
    assert after["hours_since_last_txn"] == pytest.approx(24.0)


def test_entities_leave_after_30_quiet_days_and_new_ones_get_a_null_row() -> None:
    table = customer_daily(CUSTOMER_TX)
    c2 = table[table["customer_id"] == 2]
    # active 01-02 .. 01-31 (30 snapshots), plus the all-null row at 01-01 (its first day)
    assert c2["event_timestamp"].min() == pd.Timestamp("2026-01-01", tz="UTC")
    assert c2["event_timestamp"].max() == pd.Timestamp("2026-01-31", tz="UTC")
    assert len(c2) == 31
    first = c2.iloc[0]
    assert pd.isna(first["txn_count_30d"]) and math.isnan(first["amount_mean_30d"])
    # snapshots run to the day after the last transaction (t6); customer 1 stays 30 days after t4
    assert table["event_timestamp"].max() == pd.Timestamp("2026-02-16", tz="UTC")
    c1 = table[table["customer_id"] == 1]
    assert c1["event_timestamp"].max() == pd.Timestamp("2026-02-08", tz="UTC")


def test_output_is_sorted_and_typed() -> None:
    table = customer_daily(CUSTOMER_TX)
    assert table.equals(table.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True))
    assert str(table["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert str(table["txn_count_7d"].dtype) == "Int64"
    assert table["customer_id"].dtype == "int64"


def test_a_late_transaction_never_changes_its_own_or_earlier_snapshots() -> None:
    base = customer_daily(CUSTOMER_TX)
    huge = _tx([("t9", "2026-01-02 23:59:00", 1, 9, 49_999.0, "online", False)])
    changed = customer_daily(pd.concat([CUSTOMER_TX, huge], ignore_index=True))
    cut = pd.Timestamp("2026-01-02", tz="UTC")  # the snapshot of the huge transaction's own day
    pd.testing.assert_frame_equal(
        base[base["event_timestamp"] <= cut].reset_index(drop=True),
        changed[changed["event_timestamp"] <= cut].reset_index(drop=True),
    )
    assert _row(changed, "customer_id", 1, "2026-01-03")["amount_max_30d"] == pytest.approx(49_999.0)


MERCHANT_TX = _tx(
    [
        ("a", "2026-01-01 09:00:00", 1, 7, 100.0, "online", False),  # fraud, label late on 01-04
        ("b", "2026-01-01 10:00:00", 2, 7, 50.0, "in_store", True),  # legit, label at 01-03 00:00
        ("c", "2026-01-02 10:00:00", 3, 7, 30.0, "in_store", True),  # no label yet
        ("d", "2026-02-10 10:00:00", 3, 8, 30.0, "in_store", True),  # another merchant, later
    ]
)
MERCHANT_LABELS = _labels(
    [("a", "2026-01-04 12:00:00", 1), ("b", "2026-01-03 00:00:00", 0), ("zz", "2026-01-01 00:00:00", 1)]
)


@pytest.mark.parametrize(
    ("snapshot", "labelled", "rate"),
    [
        ("2026-01-02", 0, 0.0),  # nothing labelled yet
        ("2026-01-03", 1, 0.0),  # b's label arrives exactly at the snapshot: known
        ("2026-01-04", 1, 0.0),  # a's label (fraud) arrives 12 hours after this snapshot
        ("2026-01-05", 2, 0.5),
        ("2026-01-31", 2, 0.5),  # 01-31 sees 01-01 .. 01-30
        ("2026-02-01", 0, 0.0),  # the labelled day left the 30-day window; c has no label
    ],
)
def test_fraud_rate_uses_only_labels_known_at_the_snapshot(snapshot: str, labelled: int, rate: float) -> None:
    table = merchant_daily(MERCHANT_TX, MERCHANT_LABELS)
    row = _row(table, "merchant_id", 7, snapshot)
    assert row["labelled_count_30d"] == labelled
    assert row["fraud_rate_30d"] == pytest.approx(rate)


def test_merchant_activity_windows() -> None:
    table = merchant_daily(MERCHANT_TX, MERCHANT_LABELS)
    row = _row(table, "merchant_id", 7, "2026-01-03")
    assert (row["txn_count_7d"], row["txn_count_30d"]) == (3, 3)
    assert row["amount_mean_30d"] == pytest.approx(60.0)
    row = _row(table, "merchant_id", 7, "2026-02-01")
    assert (row["txn_count_7d"], row["txn_count_30d"]) == (0, 1)
    # merchant 7 is last seen 01-02, so its last snapshot is 30 days later
    m7 = table[table["merchant_id"] == 7]
    assert m7["event_timestamp"].max() == pd.Timestamp("2026-02-01", tz="UTC")


def test_merchant_without_labels_has_rate_zero() -> None:
    table = merchant_daily(MERCHANT_TX, MERCHANT_LABELS.iloc[0:0])
    assert (table["fraud_rate_30d"].dropna() == 0.0).all()
    assert (table["labelled_count_30d"].dropna() == 0).all()


def _write_labels(folder: Path, labels: pd.DataFrame) -> None:
    """The fraud labels as the generator delivers them: one parquet file per transaction day."""
    folder.mkdir(parents=True)
    full = labels.merge(MERCHANT_TX[["transaction_id", "event_timestamp"]], on="transaction_id", how="left")
    full["event_timestamp"] = full["event_timestamp"].fillna(pd.Timestamp("2026-01-01", tz="UTC"))
    full = full[["transaction_id", "event_timestamp", "label_timestamp", "is_fraud"]]
    for day, rows in full.groupby(full["event_timestamp"].dt.strftime("%Y-%m-%d")):
        rows.to_parquet(folder / f"{day}.parquet", index=False)


def test_params_point_the_feature_stage_at_build_tables() -> None:
    spec = load_params(PROJECT_DIR / "params.yaml").features.transform
    assert spec == "feature_repo/transform.py:build_tables"
    build = project_code.load_callable(spec, PROJECT_DIR, "features.transform")
    assert build.__name__ == "build_tables" and build.__doc__ == transform.build_tables.__doc__


def test_build_tables_returns_one_table_per_feast_source(tmp_path: Path) -> None:
    _write_labels(tmp_path / "labels", MERCHANT_LABELS)
    tables = transform.build_tables(TransformInputs(MERCHANT_TX, tmp_path, tmp_path))
    # the names of the FileSources in feature_repo/feature_definitions.py
    assert set(tables) == {"customer_daily_source", "merchant_daily_source"}
    pd.testing.assert_frame_equal(tables["customer_daily_source"], customer_daily(MERCHANT_TX))
    pd.testing.assert_frame_equal(tables["merchant_daily_source"],
                                  merchant_daily(MERCHANT_TX, MERCHANT_LABELS))
    # the labels read from raw_dir/labels: a's fraud label is known from the 01-05 snapshot on
    row = _row(tables["merchant_daily_source"], "merchant_id", 7, "2026-01-05")
    assert (row["labelled_count_30d"], row["fraud_rate_30d"]) == (2, pytest.approx(0.5))


def test_build_tables_without_labels_yet(tmp_path: Path) -> None:
    tables = transform.build_tables(TransformInputs(MERCHANT_TX, tmp_path, tmp_path))
    merchants = tables["merchant_daily_source"]
    assert (merchants["labelled_count_30d"].dropna() == 0).all()
    assert (merchants["fraud_rate_30d"].dropna() == 0.0).all()


def test_read_labels_concatenates_the_day_files(tmp_path: Path) -> None:
    _write_labels(tmp_path / "labels", MERCHANT_LABELS)
    labels = transform.read_labels(tmp_path / "labels")
    assert sorted(labels["transaction_id"]) == ["a", "b", "zz"]
    assert list(labels.columns) == ["transaction_id", "event_timestamp", "label_timestamp", "is_fraud"]
    empty = transform.read_labels(tmp_path / "nowhere")
    assert empty.empty and list(empty.columns) == list(labels.columns)
    assert str(empty["label_timestamp"].dtype) == "datetime64[ns, UTC]"


def test_no_transactions_is_a_clear_error() -> None:
    with pytest.raises(GlueError, match="no transactions to aggregate"):
        customer_daily(CUSTOMER_TX.iloc[0:0])

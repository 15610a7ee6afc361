"""The demo project's snapshot aggregates (feature_repo/transform.py, its `features.transform`) on
tiny hand-made frames, numbers worked out by hand.

Snapshot D (00:00 UTC) may use only transactions strictly before D, and only labels known at D.
The tables are computed one partition of the entities at a time; any partitioning gives the same table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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


def _partition_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random transactions over 50 days (2026-01-01 .. 02-19) and their late labels.

    21 customers and 21 merchants (ids sorted as listed, not contiguous), each with a history
    shaped so that a partition computed from its own rows alone would differ: the 3 lowest ids
    stop on day 9 (their partition's last day is not the frame's), the 3 highest start on day
    40 (not its first day), two transact once (on day 25, and on the last day), the others (3..8)
    transact several times a day all along. Rows are shuffled, amounts have cents (the float sums
    must come out bit for bit), and the labels
    arrive 0 to 35 days late, some exactly at midnight, some twice, some for unknown ids.
    """
    rng = np.random.default_rng(11)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    # (entity indexes, transactions each, first day, last day)
    shapes = [(range(0, 3), 20, 0, 9), (range(3, 9), 120, 0, 49), (range(9, 10), 1, 25, 25),
              (range(10, 11), 1, 49, 49), (range(11, 18), 15, 5, 44), (range(18, 21), 10, 40, 49)]
    customers, merchants = 1000 + 13 * np.arange(21), 500 + 11 * np.arange(21)
    pairs = []  # (customer index, merchant index, day); the other side from the full-range 3..8
    for indexes, count, first, last in shapes:
        for i in indexes:
            for day in rng.integers(first, last + 1, count):
                pairs.append((i, int(rng.integers(3, 9)), day))
                pairs.append((int(rng.integers(3, 9)), i, day))
    rows = []
    for n, k in enumerate(rng.permutation(len(pairs))):
        c, m, day = pairs[k]
        second = 0 if n % 10 == 0 else int(rng.integers(0, 86_400))  # every 10th at midnight
        rows.append((f"t{n}", start + pd.Timedelta(days=int(day), seconds=second), int(customers[c]),
                     int(merchants[m]), round(float(rng.lognormal(3.0, 1.5)), 2),
                     str(rng.choice(["online", "in_store", "atm"])), bool(rng.random() < 0.5)))
    tx = _tx(rows)
    labelled = tx.sample(frac=0.6, random_state=3)
    delay = pd.to_timedelta(rng.integers(0, 35 * 24, len(labelled)), unit="h")
    at = labelled["event_timestamp"] + delay
    at = at.where(rng.random(len(at)) < 0.8, at.dt.floor("D"))  # some arrive exactly at midnight
    label_rows = list(zip(labelled["transaction_id"], at, (rng.random(len(at)) < 0.3).astype(int),
                          strict=True))
    label_rows += [(tid, ts + pd.Timedelta(days=2), 1 - fraud) for tid, ts, fraud in label_rows[:10]]
    label_rows += [("nope1", start, 1), ("nope2", start + pd.Timedelta(days=3), 0)]
    return tx, _labels(label_rows)


PARTITION_TX, PARTITION_LABELS = _partition_data()
N_DAYS = 50  # transaction days 0 .. 49: 51 snapshots


def _budget(n_partitions: int) -> int:
    """A cell budget that splits the 21 entities of _partition_data into n_partitions partitions."""
    budget = -(-21 // n_partitions) * (N_DAYS + 1)
    assert len(transform._entity_chunks(21, N_DAYS, budget)) == n_partitions
    return budget


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames, the float columns bit for bit (also -0.0 vs 0.0 and NaN payloads)."""
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    for name in expected.columns[expected.dtypes == "float64"]:
        bits, expected_bits = got[name].to_numpy().view("int64"), expected[name].to_numpy().view("int64")
        assert np.array_equal(bits, expected_bits), name


def test_partition_data_covers_what_partitioning_could_get_wrong() -> None:
    whole = customer_daily(PARTITION_TX, cell_budget=10**9)
    assert transform._Days(PARTITION_TX).n_days == N_DAYS
    first_seen = whole.groupby("customer_id")["event_timestamp"].min()
    start = pd.Timestamp("2026-01-01", tz="UTC")
    assert (first_seen.iloc[-3:] >= start + pd.Timedelta(days=40)).all()  # the last partition of 7
    assert (whole.groupby("customer_id")["event_timestamp"].max().iloc[:3]
            <= start + pd.Timedelta(days=40)).all()  # the first: 30 days after day 9 at most
    assert (PARTITION_TX["customer_id"].value_counts() == 1).sum() == 2
    known = PARTITION_LABELS.drop_duplicates("transaction_id").merge(PARTITION_TX, on="transaction_id")
    assert (known["label_timestamp"] - known["event_timestamp"] > pd.Timedelta(days=30)).any()


@pytest.mark.parametrize("n_partitions", [1, 3, 7, 21])
def test_customer_daily_is_the_same_in_any_partitions(n_partitions: int) -> None:
    whole = customer_daily(PARTITION_TX, cell_budget=10**9)
    _assert_same(customer_daily(PARTITION_TX, cell_budget=_budget(n_partitions)), whole)


@pytest.mark.parametrize("n_partitions", [1, 3, 7, 21])
def test_merchant_daily_is_the_same_in_any_partitions(n_partitions: int) -> None:
    whole = merchant_daily(PARTITION_TX, PARTITION_LABELS, cell_budget=10**9)
    assert (whole["labelled_count_30d"] > 0).any() and (whole["fraud_rate_30d"] > 0).any()
    _assert_same(merchant_daily(PARTITION_TX, PARTITION_LABELS, cell_budget=_budget(n_partitions)), whole)


def test_partitions_without_labels_and_the_default_budget() -> None:
    no_labels = PARTITION_LABELS.iloc[0:0]
    _assert_same(merchant_daily(PARTITION_TX, no_labels, cell_budget=_budget(7)),
                 merchant_daily(PARTITION_TX, no_labels, cell_budget=10**9))
    # the hand-made frames above, in one partition by default, the same one entity at a time
    _assert_same(customer_daily(CUSTOMER_TX, cell_budget=1), customer_daily(CUSTOMER_TX))
    _assert_same(merchant_daily(MERCHANT_TX, MERCHANT_LABELS, cell_budget=1),
                 merchant_daily(MERCHANT_TX, MERCHANT_LABELS))


def test_a_partition_holds_at_least_one_entity() -> None:
    assert transform._entity_chunks(5, 100, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert transform._entity_chunks(5, 9, 20) == [(0, 2), (2, 4), (4, 5)]  # 10 cells an entity
    assert transform._entity_chunks(5, 9, 10**9) == [(0, 5)]


def test_sums_add_in_frame_order_in_any_partition() -> None:
    # float addition is not associative: 1e16 + 1.0 rounds back to 1e16, so these four amounts sum
    # to 1.0 in frame order and to something else in any other; customer 2's rows sit in between
    amounts = [1e16, 1.0, -1e16, 1.0]
    rows = []
    for n, amount in enumerate(amounts):
        rows.append((f"a{n}", f"2026-01-01 0{n}:00:00", 1, 1, amount, "online", False))
        rows.append((f"b{n}", f"2026-01-01 0{n}:30:00", 2, 1, 5.0, "online", False))
    frame = _tx(rows + [("z", "2026-01-03 10:00:00", 3, 1, 1.0, "atm", True)])
    backwards = frame.iloc[::-1].reset_index(drop=True)
    for budget in (1, transform.CELL_BUDGET):
        table = customer_daily(frame, cell_budget=budget)
        assert _row(table, "customer_id", 1, "2026-01-02")["amount_sum_1d"] == 1.0
        table = customer_daily(backwards, cell_budget=budget)
        assert _row(table, "customer_id", 1, "2026-01-02")["amount_sum_1d"] == ((1.0 + -1e16) + 1.0) + 1e16

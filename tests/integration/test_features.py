"""The feature stage with the real Feast (local profile) on a small generated data set.

Builds once per module: 10 days x 300 transactions, plus one planted transaction with a huge
amount late on day 5 and a fraud label that arrives on day 8 at noon. Then checks what the Feast
CLI sees, online reads, and that no training row gets anything from its own future.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glue import demo_data, feature_store
from glue.features import FeaturesResult, TrainingFrame, build_features, online_features, training_frame
from glue.settings import DemoParams, Settings, load_settings

pytestmark = pytest.mark.slow

PROJECT_DIR = Path(__file__).resolve().parents[2]
HUGE = 49_999.0
HUGE_AT = pd.Timestamp("2026-01-06 23:30:00", tz="UTC")  # late on day index 5
HUGE_LABEL_AT = pd.Timestamp("2026-01-09 12:00:00", tz="UTC")  # known from the 01-10 snapshot on


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FeaturesResult, TrainingFrame]:
    root = tmp_path_factory.mktemp("features") / "project"
    root.mkdir()
    shutil.copy2(PROJECT_DIR / "params.yaml", root / "params.yaml")
    shutil.copytree(PROJECT_DIR / "feature_repo", root / "feature_repo",
                    ignore=shutil.ignore_patterns("__pycache__", "data", "mlflow.db"))
    settings = load_settings("local", project_dir=root)
    params = DemoParams(days=10, transactions_per_day=300, customers=300, merchants=40,
                        label_delay_days=2, seed=7)
    demo_data.generate(params, settings.raw_dir)
    validated = settings.validated_dir / "transactions"
    shutil.copytree(settings.raw_transactions_dir, validated)
    _plant_huge_transaction(settings)
    result = build_features(settings)
    return settings, result, training_frame(settings)


def _plant_huge_transaction(settings: Settings) -> None:
    day = HUGE_AT.strftime("%Y-%m-%d")
    tx_file = settings.validated_dir / "transactions" / f"{day}.parquet"
    tx = pd.read_parquet(tx_file)
    row = tx.iloc[[0]].copy()
    row["transaction_id"], row["event_timestamp"], row["amount"] = "t_huge", HUGE_AT, HUGE
    pd.concat([tx, row], ignore_index=True).to_parquet(tx_file, index=False)
    label_file = settings.raw_labels_dir / f"{day}.parquet"
    labels = pd.read_parquet(label_file)
    label = pd.DataFrame({"transaction_id": ["t_huge"], "event_timestamp": [HUGE_AT],
                          "label_timestamp": [HUGE_LABEL_AT], "is_fraud": [1]})
    pd.concat([labels, label.astype(labels.dtypes.to_dict())], ignore_index=True).to_parquet(
        label_file, index=False
    )


def test_build_writes_snapshots_and_registers_the_repo(built) -> None:
    settings, result, _ = built
    assert result.customer_rows > 0 and result.merchant_rows > 0
    assert result.first_snapshot == pd.Timestamp("2026-01-01", tz="UTC")
    assert result.last_snapshot == pd.Timestamp("2026-01-11", tz="UTC")  # day after the last batch
    assert result.materialized_end == result.last_snapshot
    assert {"customer_transactions", "merchant_risk", "transaction_request_features"} <= set(
        result.feature_views
    )
    assert result.feature_services == ["fraud_model_v1"]
    assert (settings.features_dir / "customer_daily.parquet").is_file()
    assert "materialized" in result.summary()


def test_feast_cli_sees_the_same_registry(built) -> None:
    settings, _, _ = built
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    feast = Path(sys.executable).parent / "feast"
    out = subprocess.run([str(feast), "feature-views", "list"], cwd=settings.feast_repo, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "customer_transactions" in out and "merchant_risk" in out


def test_training_frame_has_every_labelled_transaction(built) -> None:
    settings, _, frame = built
    df = frame.df
    assert frame.feature_service == "fraud_model_v1"
    assert len(frame.feature_columns) == len(frame.feature_refs) > 20
    assert "customer_transactions__amount_mean_30d" in frame.feature_columns
    assert "transaction_request_features__log_amount" in frame.feature_columns
    labels = pd.concat(pd.read_parquet(p) for p in sorted(settings.raw_labels_dir.glob("*.parquet")))
    assert len(df) == len(labels) == df["transaction_id"].nunique()
    assert df["event_timestamp"].is_monotonic_increasing
    assert set(df["is_fraud"].unique()) <= {0, 1}
    # the request-only features never depend on history
    assert df["transaction_request_features__log_amount"].notna().all()


def test_labels_not_known_at_until_are_left_out(built) -> None:
    settings, _, frame = built
    until = pd.Timestamp("2026-01-06", tz="UTC")
    early = training_frame(settings, until=until.to_pydatetime())
    assert 0 < len(early.df) < len(frame.df)
    labels = pd.concat(pd.read_parquet(p) for p in sorted(settings.raw_labels_dir.glob("*.parquet")))
    known = set(labels.loc[labels["label_timestamp"] <= until, "transaction_id"])
    assert set(early.df["transaction_id"]) == known


def test_no_feature_comes_from_the_future(built) -> None:
    """Every training row's features equal a recomputation from strictly earlier data."""
    settings, _, frame = built
    tx = pd.concat(pd.read_parquet(p) for p in sorted((settings.validated_dir / "transactions").glob("*")))
    labels = pd.concat(pd.read_parquet(p) for p in sorted(settings.raw_labels_dir.glob("*.parquet")))
    tx = tx.merge(labels[["transaction_id", "label_timestamp", "is_fraud"]], on="transaction_id", how="left")
    rows = frame.df.sample(n=300, random_state=0)
    rows = pd.concat([rows, frame.df[frame.df["customer_id"] == _huge(tx)["customer_id"]]])
    for row in rows.itertuples(index=False):
        snap = row.event_timestamp.floor("D")
        assert snap <= row.event_timestamp
        past = tx[tx["event_timestamp"] < snap]
        recent = past[past["event_timestamp"] >= snap - pd.Timedelta("30D")]
        cust = recent[recent["customer_id"] == row.customer_id]
        c7 = cust[cust["event_timestamp"] >= snap - pd.Timedelta("7D")]
        got = row._asdict()
        if cust.empty:
            assert pd.isna(got["customer_transactions__txn_count_30d"])
        else:
            assert got["customer_transactions__txn_count_30d"] == len(cust)
            assert got["customer_transactions__txn_count_7d"] == len(c7)
            assert got["customer_transactions__amount_sum_30d"] == pytest.approx(cust["amount"].sum())
            assert got["customer_transactions__amount_max_30d"] == pytest.approx(cust["amount"].max())
            assert got["customer_transactions__distinct_merchants_7d"] == c7["merchant_id"].nunique()
        merch = recent[recent["merchant_id"] == row.merchant_id]
        known = merch[merch["label_timestamp"] <= snap]
        if not merch.empty:
            assert got["merchant_risk__labelled_count_30d"] == len(known)
            rate = known["is_fraud"].mean() if len(known) else 0.0
            assert got["merchant_risk__fraud_rate_30d"] == pytest.approx(rate)


def test_a_huge_late_transaction_only_shows_up_from_the_next_day(built) -> None:
    settings, _, frame = built
    df = frame.df
    tx = pd.concat(pd.read_parquet(p) for p in sorted((settings.validated_dir / "transactions").glob("*")))
    huge = _huge(tx)
    mine = df[df["customer_id"] == huge["customer_id"]]
    before = mine[mine["event_timestamp"] <= HUGE_AT]
    after = mine[mine["event_timestamp"] >= HUGE_AT.ceil("D")]
    assert len(before) > 0
    assert (before["customer_transactions__amount_max_30d"].fillna(0) < HUGE).all()
    own = df[df["transaction_id"] == "t_huge"].iloc[0]
    assert own["transaction_request_features__log_amount"] == pytest.approx(np.log1p(HUGE))
    if len(after):
        assert (after["customer_transactions__amount_max_30d"] == HUGE).all()
    # its fraud label (known 01-09 12:00) counts for the merchant only from the 01-10 snapshot
    merchant = df[df["merchant_id"] == huge["merchant_id"]]
    lab_before = merchant[(merchant["event_timestamp"] >= HUGE_LABEL_AT.floor("D"))
                          & (merchant["event_timestamp"] < HUGE_LABEL_AT.ceil("D"))]
    lab_after = merchant[merchant["event_timestamp"] >= HUGE_LABEL_AT.ceil("D")]
    if len(lab_before) and len(lab_after):
        assert (lab_after["merchant_risk__labelled_count_30d"].to_numpy()
                > lab_before["merchant_risk__labelled_count_30d"].to_numpy()[0]).all()


def test_online_features_match_offline_at_the_latest_snapshot(built) -> None:
    settings, result, frame = built
    store = feature_store.open_store(settings)
    recent = frame.df[frame.df["event_timestamp"] >= pd.Timestamp("2026-01-10", tz="UTC")].head(20)
    now = pd.Timestamp(result.last_snapshot) + pd.Timedelta(hours=9)  # after the last batch
    request = ["customer_id", "merchant_id", "amount", "channel", "card_present"]
    # distinct times: Feast's file store keeps one row per (customer, merchant, timestamp)
    rows = recent[request].assign(event_timestamp=now + pd.to_timedelta(np.arange(len(recent)), unit="s"))
    online = online_features(settings, rows.to_dict("records"), store=store)
    assert list(online.columns) == frame.feature_columns
    assert online["customer_transactions__txn_count_30d"].notna().all()
    assert online["merchant_risk__txn_count_30d"].notna().all()
    entity_df = rows.assign(event_hour=now.hour).reset_index(drop=True)
    offline = feature_store.historical_features(store, entity_df, "fraud_model_v1")
    offline = offline.sort_values(["customer_id", "merchant_id", "amount"]).reset_index(drop=True)
    keys = ["customer_id", "merchant_id", "amount"]
    online = online.assign(**{k: rows[k].to_numpy() for k in keys})
    online = online.sort_values(["customer_id", "merchant_id", "amount"]).reset_index(drop=True)
    np.testing.assert_allclose(online[frame.feature_columns].to_numpy(dtype=float),
                               offline[frame.feature_columns].to_numpy(dtype=float), rtol=1e-9)


def _huge(tx: pd.DataFrame) -> pd.Series:
    return tx[tx["transaction_id"] == "t_huge"].iloc[0]

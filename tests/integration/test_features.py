"""The feature stage with the real Feast (local profile) on a small generated data set.

Builds once per module: 10 days x 300 transactions, plus one planted transaction with a huge
amount late on day 5 and a fraud label that arrives on day 8 at noon. Then checks what the Feast
CLI sees, online reads, and that no training row gets anything from its own future, for both
models of the demo: fraud-detector (one row per labelled transaction, label view
transaction_labels) and customer-spend (one row per card holder and day, labels source
data/raw/spend_labels, known a week later).
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

from feature_repo.demo import generate as demo_data
from glue.adapters import feast
from glue.errors import GlueError
from glue.features import (
    FeaturesResult,
    TrainingFrame,
    build_features,
    online_features,
    read_events,
    training_frame,
)
from glue.settings import Settings, load_settings

pytestmark = pytest.mark.slow

PROJECT_DIR = Path(__file__).resolve().parents[2]
HUGE = 49_999.0
HUGE_AT = pd.Timestamp("2026-01-06 23:30:00", tz="UTC")  # late on day index 5
HUGE_LABEL_AT = pd.Timestamp("2026-01-09 12:00:00", tz="UTC")  # known from the 01-10 snapshot on
# the identity of a transaction in a training frame (which carries the service's inputs, not the id)
EVENT = ["event_timestamp", "customer_id", "merchant_id", "amount"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FeaturesResult, TrainingFrame,
                                                             TrainingFrame]:
    root = tmp_path_factory.mktemp("features") / "project"
    root.mkdir()
    shutil.copy2(PROJECT_DIR / "params.yaml", root / "params.yaml")
    shutil.copytree(PROJECT_DIR / "feature_repo", root / "feature_repo",
                    ignore=shutil.ignore_patterns("__pycache__", "data", "mlflow.db"))
    settings = load_settings("local", project_dir=root)
    params = demo_data.DemoParams(days=10, transactions_per_day=300, customers=300, merchants=40,
                                  label_delay_days=2, seed=7)
    demo_data.generate(params, settings.raw_dir)
    shutil.copytree(settings.raw_events_dir, settings.validated_events_dir)
    _plant_huge_transaction(settings)
    result = build_features(settings)
    return (settings, result, training_frame(settings, settings.model("fraud-detector")),
            training_frame(settings, settings.model("customer-spend")))


def _labels(settings: Settings) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted((settings.raw_dir / "labels").glob("*.parquet")))


def _spend_labels(settings: Settings) -> pd.DataFrame:
    files = sorted((settings.raw_dir / "spend_labels").glob("*.parquet"))
    return pd.concat(pd.read_parquet(p) for p in files).reset_index(drop=True)


def _events(settings: Settings) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted(settings.validated_events_dir.glob("*")))


def _labelled_events(settings: Settings, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The validated transactions whose fraud label is known at `until`, as rows of EVENT."""
    labels = _labels(settings)
    if until is not None:
        labels = labels[labels["label_timestamp"] <= until]
    return _events(settings).merge(labels[["transaction_id", "is_fraud"]], on="transaction_id")


def _plant_huge_transaction(settings: Settings) -> None:
    day = HUGE_AT.strftime("%Y-%m-%d")
    tx_file = settings.validated_dir / "transactions" / f"{day}.parquet"
    tx = pd.read_parquet(tx_file)
    row = tx.iloc[[0]].copy()
    row["transaction_id"], row["event_timestamp"], row["amount"] = "t_huge", HUGE_AT, HUGE
    pd.concat([tx, row], ignore_index=True).to_parquet(tx_file, index=False)
    label_file = settings.raw_dir / "labels" / f"{day}.parquet"
    labels = pd.read_parquet(label_file)
    label = pd.DataFrame({"transaction_id": ["t_huge"], "event_timestamp": [HUGE_AT],
                          "label_timestamp": [HUGE_LABEL_AT], "is_fraud": [1]})
    pd.concat([labels, label.astype(labels.dtypes.to_dict())], ignore_index=True).to_parquet(
        label_file, index=False
    )


def test_build_writes_snapshots_and_registers_the_repo(built) -> None:
    settings, result, _, _ = built
    # the project's transform (feature_repo/transform.py) gave one table per Feast source
    assert set(result.tables) == {"customer_daily_source", "merchant_daily_source"}
    assert result.tables["customer_daily_source"] > 0 and result.tables["merchant_daily_source"] > 0
    customers = pd.read_parquet(settings.features_dir / "customer_daily.parquet")
    written = Path(result.locations["customer_daily_source"]).resolve()
    assert written == (settings.features_dir / "customer_daily.parquet").resolve()
    assert len(customers) == result.tables["customer_daily_source"]
    assert customers["event_timestamp"].min() == pd.Timestamp("2026-01-01", tz="UTC")
    last_snapshot = pd.Timestamp("2026-01-11", tz="UTC")  # day after the last batch
    assert customers["event_timestamp"].max() == last_snapshot
    merchants = pd.read_parquet(settings.features_dir / "merchant_daily.parquet")
    assert merchants["event_timestamp"].max() == last_snapshot
    assert result.materialized_end == last_snapshot
    assert {"customer_transactions", "merchant_risk", "transaction_request_features"} <= set(
        result.feature_views
    )
    assert sorted(result.feature_services) == ["fraud_model_v1", "spend_model_v1"]
    assert "materialized" in result.summary() and "customer_daily_source" in result.summary()


def test_feast_cli_sees_the_same_registry(built) -> None:
    settings, _, _, _ = built
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    feast = Path(sys.executable).parent / "feast"
    out = subprocess.run([str(feast), "feature-views", "list"], cwd=settings.feast_repo, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "customer_transactions" in out and "merchant_risk" in out
    services = subprocess.run([str(feast), "feature-services", "list"], cwd=settings.feast_repo, env=env,
                              capture_output=True, text=True, timeout=120, check=True).stdout
    assert "fraud_model_v1" in services and "spend_model_v1" in services


def _same_events(frame: pd.DataFrame, expected: pd.DataFrame, columns: list[str]) -> None:
    """The frame holds exactly the expected rows (as a multiset of `columns`), each once."""
    got = frame[columns].sort_values(columns).reset_index(drop=True)
    want = expected[columns].sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_training_frame_has_every_labelled_transaction(built) -> None:
    settings, _, frame, _ = built
    df = frame.df
    assert frame.feature_service == "fraud_model_v1" and frame.label_column == "is_fraud"
    assert len(frame.feature_columns) == len(frame.feature_refs) > 20
    assert "customer_transactions__amount_mean_30d" in frame.feature_columns
    assert "transaction_request_features__log_amount" in frame.feature_columns
    assert "transaction_request_features__is_night" in frame.feature_columns
    # the label's key (the event id), the service's inputs (join keys, request fields with the
    # event time), features, label
    assert list(df.columns) == ["transaction_id", "customer_id", "merchant_id", "event_timestamp", "amount",
                                "channel", "card_present", *frame.feature_columns, "is_fraud"]
    assert df["transaction_id"].is_unique
    assert list(frame.X.columns) == frame.feature_columns and frame.y.name == "is_fraud"
    labels = _labels(settings)
    assert len(df) == len(labels) == labels["transaction_id"].nunique()
    _same_events(df, _labelled_events(settings), [*EVENT, "is_fraud"])
    assert df["event_timestamp"].is_monotonic_increasing
    assert set(df["is_fraud"].unique()) <= {0, 1}
    # the request-only features never depend on history
    assert df["transaction_request_features__log_amount"].notna().all()
    # the hour comes from the event time (the ODFV computes it): night is before 06:00 UTC
    night = (df["event_timestamp"].dt.tz_convert("UTC").dt.hour < 6).astype(int)
    assert (df["transaction_request_features__is_night"] == night).all()


def test_max_train_rows_samples_before_the_point_in_time_join(built) -> None:
    """Training's sample is drawn among the labelled events before Feast joins them: the rows
    joined are the sampled training rows and every held-out row, each with the features the full
    join gives it; the same seed draws the same sample."""
    from glue import training

    settings, _, frame, _ = built
    model = settings.model("fraud-detector").model_copy(update={"max_train_rows": 500})
    sample = training.PreJoinSample(model)
    sampled = training_frame(settings, model, select=sample).df
    is_train, _ = training.split_by_days(frame.df, model.validation_days)
    assert sample.available == int(is_train.sum()) > 500
    key = "transaction_id"
    held_out = set(frame.df.loc[~is_train, key])
    assert len(sampled) == 500 + len(held_out) and held_out <= set(sampled[key])
    assert set(sampled[key]) <= set(frame.df[key])
    full = frame.df.set_index(key).loc[sorted(sampled[key])].reset_index()[list(sampled.columns)]
    pd.testing.assert_frame_equal(sampled.sort_values(key).reset_index(drop=True), full, check_exact=True)
    again = training_frame(settings, model, select=training.PreJoinSample(model)).df
    assert set(again[key]) == set(sampled[key])
    # under max_train_rows (the demo's 500,000): nothing is left out
    whole = training.PreJoinSample(settings.model("fraud-detector"))
    assert len(training_frame(settings, settings.model("fraud-detector"), select=whole).df) == len(frame.df)
    assert whole.available == int(is_train.sum())


def test_labels_not_known_at_until_are_left_out(built) -> None:
    settings, _, frame, _ = built
    until = pd.Timestamp("2026-01-06", tz="UTC")
    early = training_frame(settings, settings.model("fraud-detector"), until=until.to_pydatetime())
    assert 0 < len(early.df) < len(frame.df)
    _same_events(early.df, _labelled_events(settings, until), [*EVENT, "is_fraud"])
    labels = _labels(settings)
    assert len(early.df) == (labels["label_timestamp"] <= until).sum()


def test_customer_spend_frame_has_a_row_per_holder_and_day(built) -> None:
    settings, _, _, frame = built
    df = frame.df
    assert frame.feature_service == "spend_model_v1" and frame.label_column == "spend_next_7d"
    # the reused customer view, and nothing of the transaction-level services
    assert len(frame.feature_columns) == len(frame.feature_refs) == 13
    assert all(c.startswith("customer_transactions__") for c in frame.feature_columns)
    assert all(r.startswith("customer_transactions:") for r in frame.feature_refs)
    assert list(df.columns) == ["customer_id", "event_timestamp", *frame.feature_columns, "spend_next_7d"]
    labels = _spend_labels(settings)
    assert len(labels) > 100
    _same_events(df, labels, ["customer_id", "event_timestamp", "spend_next_7d"])
    assert sorted(df["event_timestamp"].unique()) == [pd.Timestamp(d, tz="UTC") for d in
                                                       ("2026-01-02", "2026-01-03", "2026-01-04")]
    assert df["event_timestamp"].is_monotonic_increasing
    assert (df["spend_next_7d"] >= 0).all() and df["spend_next_7d"].dtype == "float64"
    # every labelled holder paid the day before: the snapshot at the label's time counts it
    assert (df["customer_transactions__txn_count_1d"] >= 1).all()


def test_customer_spend_frame_holds_only_labels_known_at_until(built) -> None:
    settings, _, _, frame = built
    model = settings.model("customer-spend")
    until = pd.Timestamp("2026-01-10", tz="UTC")  # 01-02's labels known 01-09, 01-03's at 01-10 00:00
    early = training_frame(settings, model, until=until.to_pydatetime())
    labels = _spend_labels(settings)
    known = labels[labels["label_timestamp"] <= until]
    assert 0 < len(known) < len(labels)
    _same_events(early.df, known, ["customer_id", "event_timestamp", "spend_next_7d"])
    assert set(early.df["event_timestamp"]) == {pd.Timestamp("2026-01-02", tz="UTC"),
                                                pd.Timestamp("2026-01-03", tz="UTC")}
    assert list(early.df.columns) == list(frame.df.columns)
    with pytest.raises(GlueError, match="customer-spend.*no labelled events known at.*spend_labels"):
        training_frame(settings, model, until=pd.Timestamp("2026-01-06", tz="UTC").to_pydatetime())


def test_customer_spend_features_are_the_snapshot_of_the_label_day(built) -> None:
    """A spend row at day D gets the customer snapshot of D 00:00: only transactions before D."""
    settings, _, _, frame = built
    tx = _events(settings)
    for row in frame.df.sample(n=150, random_state=1).itertuples(index=False):
        got = row._asdict()
        snap = row.event_timestamp
        cust = tx[(tx["customer_id"] == row.customer_id) & (tx["event_timestamp"] < snap)
                  & (tx["event_timestamp"] >= snap - pd.Timedelta("30D"))]
        day = cust[cust["event_timestamp"] >= snap - pd.Timedelta("1D")]
        c7 = cust[cust["event_timestamp"] >= snap - pd.Timedelta("7D")]
        assert got["customer_transactions__txn_count_30d"] == len(cust)
        assert got["customer_transactions__txn_count_1d"] == len(day)
        assert got["customer_transactions__txn_count_7d"] == len(c7)
        assert got["customer_transactions__amount_sum_7d"] == pytest.approx(c7["amount"].sum())
        assert got["customer_transactions__amount_max_30d"] == pytest.approx(cust["amount"].max())


def test_no_feature_comes_from_the_future(built) -> None:
    """Every training row's features equal a recomputation from strictly earlier data."""
    settings, _, frame, _ = built
    tx = _events(settings)
    labels = _labels(settings)
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
    settings, _, frame, _ = built
    df = frame.df
    tx = _events(settings)
    huge = _huge(tx)
    mine = df[df["customer_id"] == huge["customer_id"]]
    before = mine[mine["event_timestamp"] <= HUGE_AT]
    after = mine[mine["event_timestamp"] >= HUGE_AT.ceil("D")]
    assert len(before) > 0
    assert (before["customer_transactions__amount_max_30d"].fillna(0) < HUGE).all()
    own = df[(df["event_timestamp"] == HUGE_AT) & (df["amount"] == HUGE)]
    assert len(own) == 1
    own = own.iloc[0]
    assert own["is_fraud"] == 1
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


def test_read_events_gives_the_validated_batches_in_event_order(built) -> None:
    settings, _, _, _ = built
    events = read_events(settings)
    assert len(events) == len(_events(settings))
    assert events["event_timestamp"].is_monotonic_increasing
    assert "t_huge" in set(events["transaction_id"])


def test_online_features_match_offline_at_the_latest_snapshot(built) -> None:
    settings, result, frame, _ = built
    store = feast.open_store(settings)
    recent = frame.df[frame.df["event_timestamp"] >= pd.Timestamp("2026-01-10", tz="UTC")].head(20)
    now = pd.Timestamp(result.materialized_end) + pd.Timedelta(hours=3)  # after the last batch, at night
    request = ["customer_id", "merchant_id", "amount", "channel", "card_present"]
    # distinct times: Feast's file store keeps one row per (customer, merchant, timestamp)
    rows = recent[request].assign(event_timestamp=now + pd.to_timedelta(np.arange(len(recent)), unit="s"))
    online = online_features(settings, settings.model("fraud-detector"), rows.to_dict("records"), store=store)
    assert list(online.columns) == frame.feature_columns
    assert online["customer_transactions__txn_count_30d"].notna().all()
    assert online["merchant_risk__txn_count_30d"].notna().all()
    assert (online["transaction_request_features__is_night"] == 1).all()  # 03:00 UTC
    entity_df = rows.reset_index(drop=True)
    offline = feast.historical_features(store, entity_df, "fraud_model_v1")
    offline = offline.sort_values(["customer_id", "merchant_id", "amount"]).reset_index(drop=True)
    keys = ["customer_id", "merchant_id", "amount"]
    online = online.assign(**{k: rows[k].to_numpy() for k in keys})
    online = online.sort_values(["customer_id", "merchant_id", "amount"]).reset_index(drop=True)
    np.testing.assert_allclose(online[frame.feature_columns].to_numpy(dtype=float),
                               offline[frame.feature_columns].to_numpy(dtype=float), rtol=1e-9)


def test_online_spend_features_match_offline_at_the_latest_snapshot(built) -> None:
    settings, result, _, frame = built
    store = feast.open_store(settings)
    customers = sorted(frame.df["customer_id"].unique())[:20]
    online = online_features(settings, settings.model("customer-spend"),
                             [{"customer_id": int(c)} for c in customers], store=store)
    assert list(online.columns) == frame.feature_columns
    now = pd.Timestamp(result.materialized_end) + pd.Timedelta(hours=9)
    entity_df = pd.DataFrame({"customer_id": customers, "event_timestamp": now})
    offline = feast.historical_features(store, entity_df, "spend_model_v1")
    offline = offline.sort_values("customer_id").reset_index(drop=True)
    np.testing.assert_allclose(online[frame.feature_columns].to_numpy(dtype=float),
                               offline[frame.feature_columns].to_numpy(dtype=float), rtol=1e-9)


def _huge(tx: pd.DataFrame) -> pd.Series:
    return tx[tx["transaction_id"] == "t_huge"].iloc[0]


@pytest.mark.parametrize("model", ["fraud-detector", "customer-spend"])
def test_duckdb_store_gives_the_file_stores_training_frame(built, model: str) -> None:
    """The local profile moved from Feast's file (Dask) offline store to its DuckDB store (issue 13):
    on the demo, both point-in-time joins must give the very same training frame."""
    settings, _, fraud_frame, spend_frame = built
    duckdb_frame = fraud_frame if model == "fraud-detector" else spend_frame
    assert feast.open_store(settings).config.offline_store.type == "duckdb"
    file_yaml = settings.feast_repo / "feature_store_file.yaml"
    file_yaml.write_text(settings.feast_yaml.read_text().replace("type: duckdb", "type: file"))
    try:
        file_settings = settings.model_copy(update={"feast_yaml": file_yaml})
        file_store = feast.open_store(file_settings)
        assert file_store.config.offline_store.type == "file"
        file_frame = training_frame(file_settings, settings.model(model), store=file_store)
    finally:
        file_yaml.unlink()
    assert len(duckdb_frame.df) > 500
    assert file_frame.feature_columns == duckdb_frame.feature_columns
    pd.testing.assert_frame_equal(file_frame.df, duckdb_frame.df, check_exact=True)


def test_read_events_and_training_frame_of_a_time_range(built) -> None:
    """Monitoring reads a day and the labelled days after the champion, not the whole history:
    the ranged reads give exactly the rows of the full ones inside the range."""
    settings, _, fraud_frame, spend_frame = built
    since, until = pd.Timestamp("2026-01-04", tz="UTC"), pd.Timestamp("2026-01-06", tz="UTC")
    everything = read_events(settings)
    ranged = read_events(settings, since=since.to_pydatetime(), until=until.to_pydatetime())
    inside = everything[(everything["event_timestamp"] >= since) & (everything["event_timestamp"] < until)]
    assert 0 < len(ranged) < len(everything)
    pd.testing.assert_frame_equal(ranged, inside.reset_index(drop=True))
    assert read_events(settings, since=pd.Timestamp("2027-01-01", tz="UTC").to_pydatetime()).empty
    for model, full in (("fraud-detector", fraud_frame), ("customer-spend", spend_frame)):
        recent = training_frame(settings, settings.model(model), since=since.to_pydatetime())
        expected = full.df[full.df["event_timestamp"] >= since].reset_index(drop=True)
        assert 0 < len(recent.df) < len(full.df)
        pd.testing.assert_frame_equal(recent.df.reset_index(drop=True), expected)

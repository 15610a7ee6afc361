"""The demo project's data generator (feature_repo/demo/generate.py) keeps the data contract, is
byte-for-byte deterministic, and shifts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.demo import generate as demo_data
from feature_repo.demo.generate import DemoParams
from glue.errors import GlueError

SMALL = DemoParams(seed=7, days=5, transactions_per_day=300, customers=200, merchants=40)
# long enough for spend labels: one file per day D whose 7 days D .. D+6 lie inside the data
SPEND = SMALL.model_copy(update={"days": 10})

TX_DTYPES = {
    "transaction_id": "object",
    "event_timestamp": "datetime64[ns, UTC]",
    "customer_id": "int64",
    "merchant_id": "int64",
    "amount": "float64",
    "channel": "object",
    "merchant_category": "object",
    "card_present": "bool",
}
SPEND_DTYPES = {
    "customer_id": "int64",
    "event_timestamp": "datetime64[ns, UTC]",
    "label_timestamp": "datetime64[ns, UTC]",
    "spend_next_7d": "float64",
}
LABEL_DTYPES = {
    "transaction_id": "object",
    "event_timestamp": "datetime64[ns, UTC]",
    "label_timestamp": "datetime64[ns, UTC]",
    "is_fraud": "int64",
}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def _read(root: Path, kind: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((root / kind).glob("*.parquet"))], ignore_index=True)


def _with_day(root: Path, kind: str) -> pd.DataFrame:
    frames = []
    for i, path in enumerate(sorted((root / kind).glob("*.parquet"))):
        frames.append(pd.read_parquet(path).assign(day=i))
    return pd.concat(frames, ignore_index=True)


def test_same_params_give_byte_identical_files(tmp_path: Path) -> None:
    a = demo_data.generate(SPEND, tmp_path / "a")
    b = demo_data.generate(SPEND, tmp_path / "b")
    assert (a.transactions, a.fraud) == (b.transactions, b.fraud)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    # transactions and fraud labels per day, spend labels for days 2 .. days-6
    hashes = _hashes(tmp_path / "a")
    assert len(hashes) == 2 * SPEND.days + (SPEND.days - 7)
    assert len([k for k in hashes if k.startswith("spend_labels/")]) == SPEND.days - 7
    other = demo_data.generate(SPEND.model_copy(update={"seed": 8}), tmp_path / "c")
    other_hashes = _hashes(tmp_path / "c")
    assert other_hashes != hashes
    assert {k: v for k, v in other_hashes.items() if k.startswith("spend_labels/")} != {
        k: v for k, v in hashes.items() if k.startswith("spend_labels/")}
    assert other.days == SPEND.days


def test_a_dict_of_the_demo_section_works_like_demo_params(tmp_path: Path) -> None:
    a = demo_data.generate(SPEND, tmp_path / "a")
    b = demo_data.generate(SPEND.model_dump(), tmp_path / "b")
    assert (a.transactions, a.fraud) == (b.transactions, b.fraud)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_spend_labels_are_the_next_7_days_of_legitimate_spending(tmp_path: Path) -> None:
    demo_data.generate(SPEND, tmp_path)
    files = sorted((tmp_path / "spend_labels").glob("*.parquet"))
    assert [p.name for p in files] == ["2026-01-02.parquet", "2026-01-03.parquet", "2026-01-04.parquet"]
    tx = _read(tmp_path, "transactions")
    fraud = _read(tmp_path, "labels")["is_fraud"].astype(bool)
    legit = tx[~fraud.to_numpy()]
    for path in files:
        spend = pd.read_parquet(path)
        assert spend.dtypes.astype(str).to_dict() == SPEND_DTYPES
        day = pd.Timestamp(path.stem, tz="UTC")
        assert (spend["event_timestamp"] == day).all()
        assert (spend["label_timestamp"] == day + pd.Timedelta(days=7)).all()
        # one row per card holder who paid (legitimately) on the day before
        paid = legit.loc[legit["event_timestamp"].between(day - pd.Timedelta(days=1), day,
                                                          inclusive="left"), "customer_id"]
        assert spend["customer_id"].is_unique
        assert sorted(spend["customer_id"]) == sorted(paid.unique())
        assert spend["customer_id"].between(0, SPEND.customers - 1).all()
        # what each spent in D .. D+6, frauds on their card not counted
        window = legit[legit["event_timestamp"].between(day, day + pd.Timedelta(days=7), inclusive="left")]
        expected = window.groupby("customer_id")["amount"].sum()
        got = spend.set_index("customer_id")["spend_next_7d"]
        assert np.allclose(got, expected.reindex(got.index, fill_value=0.0), atol=0.011)
        assert (got >= 0).all() and (got > 0).any()
        assert np.allclose(got, got.round(2))
        assert not spend.isna().any().any()


def test_files_follow_the_data_contract(tmp_path: Path) -> None:
    result = demo_data.generate(SMALL, tmp_path)
    tx_files = sorted((tmp_path / "transactions").glob("*.parquet"))
    assert [p.name for p in tx_files] == [f"2026-01-0{d}.parquet" for d in range(1, 6)]
    assert [p.name for p in sorted((tmp_path / "labels").glob("*.parquet"))] == [p.name for p in tx_files]
    total = 0
    for path in tx_files:
        tx = pd.read_parquet(path)
        assert tx.dtypes.astype(str).to_dict() == TX_DTYPES
        assert list(tx.index) == list(range(len(tx)))
        day = pd.Timestamp(path.stem, tz="UTC")
        assert tx["event_timestamp"].min() >= day
        assert tx["event_timestamp"].max() < day + pd.Timedelta(days=1)
        assert tx.sort_values(["event_timestamp", "transaction_id"]).index.tolist() == list(range(len(tx)))
        assert (tx["amount"] > 0).all() and (tx["amount"] <= 50_000).all()
        assert np.allclose(tx["amount"], tx["amount"].round(2))
        assert set(tx["channel"]) <= set(demo_data.CHANNELS)
        assert set(tx["merchant_category"]) <= set(demo_data.CATEGORIES)
        assert tx["customer_id"].between(0, SMALL.customers - 1).all()
        assert tx["merchant_id"].between(0, SMALL.merchants - 1).all()
        assert not tx.isna().any().any()
        assert not tx.loc[tx["channel"] == "online", "card_present"].any()
        total += len(tx)
    assert total == result.transactions
    ids = _read(tmp_path, "transactions")["transaction_id"]
    assert ids.is_unique
    assert ids.str.fullmatch(r"t\d{8}").all()


def test_labels_match_transactions_one_to_one_and_arrive_late(tmp_path: Path) -> None:
    result = demo_data.generate(SMALL, tmp_path)
    for path in sorted((tmp_path / "labels").glob("*.parquet")):
        labels = pd.read_parquet(path)
        tx = pd.read_parquet(tmp_path / "transactions" / path.name)
        assert labels.dtypes.astype(str).to_dict() == LABEL_DTYPES
        assert labels["transaction_id"].tolist() == tx["transaction_id"].tolist()
        assert labels["event_timestamp"].equals(tx["event_timestamp"])
        delay = labels["label_timestamp"] - labels["event_timestamp"]
        assert (delay >= pd.Timedelta(days=SMALL.label_delay_days)).all()
        assert (delay < pd.Timedelta(days=SMALL.label_delay_days, hours=6)).all()
        assert set(labels["is_fraud"]) <= {0, 1}
    assert _read(tmp_path, "labels")["is_fraud"].sum() == result.fraud
    assert "fraudulent" in result.summary()


def test_fraud_rate_is_roughly_as_asked_and_fraud_looks_like_fraud(tmp_path: Path) -> None:
    params = DemoParams(seed=3, days=20, transactions_per_day=1500, fraud_rate=0.02)
    result = demo_data.generate(params, tmp_path)
    assert 0.016 < result.fraud / result.transactions < 0.024
    tx = _read(tmp_path, "transactions")
    fraud = _read(tmp_path, "labels")["is_fraud"].astype(bool)
    hour = tx["event_timestamp"].dt.hour
    # each signal the features should pick up is clearly stronger among fraud
    online = tx["channel"] == "online"
    assert online[fraud].mean() > online[~fraud].mean() + 0.2
    assert (hour[fraud] < 6).mean() > 3 * (hour[~fraud] < 6).mean()
    typical = tx.loc[~fraud].groupby("customer_id")["amount"].median()
    ratio = tx["amount"] / tx["customer_id"].map(typical)
    assert ratio[fraud].median() > 2.5 * ratio[~fraud].median()
    merchant_rate = fraud.groupby(tx["merchant_id"]).mean()
    assert merchant_rate.max() > 5 * params.fraud_rate  # compromised merchants stand out
    # bursts: fraud rows on the same card within minutes of each other
    f = tx.loc[fraud].sort_values(["customer_id", "event_timestamp"])
    gap = f.groupby("customer_id")["event_timestamp"].diff()
    assert (gap < pd.Timedelta(minutes=30)).mean() > 0.4


def test_spending_change_raises_amounts_and_online_share_after_the_shift(tmp_path: Path) -> None:
    params = DemoParams(seed=5, days=6, transactions_per_day=800, shift_day=3, shift_kind="spending_change")
    result = demo_data.generate(params, tmp_path)
    assert result.shift_day == 3 and "spending_change" in result.summary()
    tx = _with_day(tmp_path, "transactions")
    before, after = tx[tx["day"] < 3], tx[tx["day"] >= 3]
    assert after["amount"].median() > 1.5 * before["amount"].median()
    assert (after["channel"] == "online").mean() > (before["channel"] == "online").mean() + 0.05


def test_new_fraud_pattern_changes_what_fraud_looks_like(tmp_path: Path) -> None:
    params = DemoParams(
        seed=5, days=10, transactions_per_day=1500, fraud_rate=0.02, shift_day=5,
        shift_kind="new_fraud_pattern",
    )
    demo_data.generate(params, tmp_path)
    tx = _with_day(tmp_path, "transactions")
    fraud = _read(tmp_path, "labels")["is_fraud"].astype(bool)
    before, after = fraud & (tx["day"] < 5), fraud & (tx["day"] >= 5)
    assert fraud[tx["day"] >= 5].mean() > 1.6 * fraud[tx["day"] < 5].mean()
    grocery_fuel = tx["merchant_category"].isin(["grocery", "fuel"])
    assert grocery_fuel[after].mean() > 0.7 > 0.3 > grocery_fuel[before].mean()
    assert tx.loc[after, "card_present"].mean() > 0.8 > 0.4 > tx.loc[before, "card_present"].mean()
    assert tx.loc[after, "amount"].median() < tx.loc[before, "amount"].median() / 3
    # legitimate spending is unchanged by this kind of shift
    legit_before, legit_after = ~fraud & (tx["day"] < 5), ~fraud & (tx["day"] >= 5)
    legit_median = tx.loc[legit_before, "amount"].median()
    assert tx.loc[legit_after, "amount"].median() == pytest.approx(legit_median, rel=0.1)


def test_no_shift_keeps_days_alike(tmp_path: Path) -> None:
    params = DemoParams(seed=5, days=6, transactions_per_day=800, shift_day=3, shift_kind="none")
    result = demo_data.generate(params, tmp_path)
    assert result.shift_day is None and "no shift" in result.summary()
    tx = _with_day(tmp_path, "transactions")
    before, after = tx[tx["day"] < 3], tx[tx["day"] >= 3]
    assert after["amount"].median() == pytest.approx(before["amount"].median(), rel=0.15)


def test_rerun_with_fewer_days_removes_stale_day_files_only(tmp_path: Path) -> None:
    demo_data.generate(SMALL, tmp_path)
    keep = [
        tmp_path / "transactions" / "README.md",
        tmp_path / "labels" / "notes.parquet",
        tmp_path / "x.txt",
    ]
    for path in keep:
        path.write_text("mine")
    demo_data.generate(SMALL.model_copy(update={"days": 2}), tmp_path)
    for kind in ("transactions", "labels"):
        days = sorted(p.name for p in (tmp_path / kind).glob("????-??-??.parquet"))
        assert days == ["2026-01-01.parquet", "2026-01-02.parquet"]
    assert all(p.read_text() == "mine" for p in keep)
    assert not list((tmp_path / "spend_labels").glob("*.parquet"))  # no day has 7 days after it


def test_rerun_with_fewer_days_removes_stale_spend_labels_only(tmp_path: Path) -> None:
    demo_data.generate(SPEND, tmp_path)
    mine = tmp_path / "spend_labels" / "notes.parquet"
    mine.write_text("mine")
    demo_data.generate(SPEND.model_copy(update={"days": 9}), tmp_path)
    days = sorted(p.name for p in (tmp_path / "spend_labels").glob("????-??-??.parquet"))
    assert days == ["2026-01-02.parquet", "2026-01-03.parquet"]
    assert mine.read_text() == "mine"
    assert not list(tmp_path.rglob(".*.tmp"))
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"days": 0}, "demo.days"),
        ({"transactions_per_day": 0}, "demo.transactions_per_day"),
        ({"customers": 0}, "demo.customers"),
        ({"merchants": 3}, "demo.merchants"),
        ({"fraud_rate": 1.5}, "demo.fraud_rate"),
        ({"label_delay_days": -1}, "demo.label_delay_days"),
        ({"start_date": "first of May"}, "demo.start_date"),
        ({"shift_kind": "spending_change", "shift_day": 5}, "demo.shift_day"),
        ({"shift_kind": "new_fraud_pattern", "shift_day": -1}, "demo.shift_day"),
        ({"shift_kind": "new_fraud_pattern", "shift_day": None}, "demo.shift_day"),
    ],
)
def test_bad_params_raise_a_glue_error_naming_the_field(tmp_path: Path, update: dict, field: str) -> None:
    with pytest.raises(GlueError, match=field):
        demo_data.generate(SMALL.model_copy(update=update), tmp_path)
    assert not (tmp_path / "transactions").exists()


@pytest.mark.parametrize(
    ("section", "field"),
    [({"seed": "forty-two"}, "demo.seed"), ({"days": "many"}, "demo.days"),
     ({"colour": "red"}, "demo.colour")],
)
def test_a_bad_demo_section_names_the_field(tmp_path: Path, section: dict, field: str) -> None:
    with pytest.raises(GlueError, match=field):
        demo_data.generate(section, tmp_path)
    assert not (tmp_path / "transactions").exists()

"""Synthetic TrainingFrames with a learnable signal, for training and gate tests: one per demo model
(fraud-detector, a binary classification; customer-spend, a regression).

Built by hand (no Feast) so the MLflow side is tested on its own, fast and deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glue.features import TrainingFrame

FEATURES = ["amount", "txn_count_1d", "merchant_fraud_rate_7d", "channel", "card_present", "is_night"]
LABEL = "is_fraud"

SPEND_FEATURES = ["txn_count_7d", "amount_sum_7d", "amount_mean_30d", "online_share_30d",
                  "hours_since_last_txn"]
SPEND_LABEL = "spend_next_7d"


def synthetic_frame(days: int = 30, rows_per_day: int = 150, seed: int = 0,
                    shuffle_labels: bool = False) -> TrainingFrame:
    """`days` of transactions, about 6% fraud, driven by amount, channel, card presence and history."""
    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    start = pd.Timestamp("2026-01-01", tz="UTC")
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    amount = rng.lognormal(3.5, 1.0, n)
    count = rng.poisson(3, n).astype("int64")
    rate = rng.beta(1, 30, n)
    channel = rng.choice(["online", "in_store", "atm"], n, p=[0.4, 0.5, 0.1])
    card_present = (channel != "online") & (rng.uniform(size=n) < 0.9)
    night = (ts.hour.to_numpy() < 6).astype("int64")
    logit = (-7.2 + 1.5 * np.log(amount / 33) + 0.4 * count + 40 * rate
             + 1.2 * (channel == "online") - 1.0 * card_present + 1.0 * night)
    is_fraud = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype("int64")
    if shuffle_labels:
        is_fraud = rng.permutation(is_fraud)
    df = pd.DataFrame({
        "transaction_id": [f"t{i:08d}" for i in range(n)],
        "event_timestamp": ts,
        "customer_id": rng.integers(0, 500, n),
        "merchant_id": rng.integers(0, 50, n),
        "amount": amount,
        "txn_count_1d": count,
        "merchant_fraud_rate_7d": rate,
        "channel": channel,
        "card_present": card_present,
        "is_night": night,
        LABEL: is_fraud,
    })
    refs = ["customer_daily:txn_count_1d", "merchant_daily:merchant_fraud_rate_7d",
            "transaction_request:amount", "transaction_request:channel",
            "transaction_request:card_present", "transaction_request_features:is_night"]
    return TrainingFrame(df=df, feature_columns=list(FEATURES), feature_service="fraud_model_v1",
                         feature_refs=refs, label_column=LABEL)


def synthetic_spend_frame(days: int = 30, customers: int = 150, seed: int = 0, noise: float = 20.0,
                          shuffle_labels: bool = False) -> TrainingFrame:
    """`days` daily snapshots of `customers` card holders and what each spent in the next 7 days:
    an entity-level regression (one row per customer and day, at 00:00 UTC, as the demo's spend
    labels are): mostly the recent weekly spending, more for holders active in the last 10 hours
    (a step only a tree model picks up) and online shoppers, plus `noise`."""
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(days), customers)
    customer = np.tile(np.arange(customers), days)
    n = len(day)
    level = rng.lognormal(4.5, 0.6, customers)[customer]  # a holder's weekly spending habit
    count = rng.poisson(6, n).astype("int64")
    amount_sum = level * rng.lognormal(0.0, 0.25, n)
    mean30 = level / 6 * rng.lognormal(0.0, 0.1, n)
    online = rng.beta(2, 6, n)
    hours = rng.exponential(20.0, n)
    spend = np.maximum(0.0, 0.7 * amount_sum + 0.3 * level + 60 * online + 60 * (hours < 10)
                       + rng.normal(0.0, noise, n))
    if shuffle_labels:
        spend = rng.permutation(spend)
    df = pd.DataFrame({
        "customer_id": customer.astype("int64"),
        "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"),
        "txn_count_7d": count,
        "amount_sum_7d": amount_sum,
        "amount_mean_30d": mean30,
        "online_share_30d": online,
        "hours_since_last_txn": hours,
        SPEND_LABEL: np.round(spend, 2),
    })
    refs = [f"customer_transactions:{c}" for c in SPEND_FEATURES]
    return TrainingFrame(df=df, feature_columns=list(SPEND_FEATURES), feature_service="spend_model_v1",
                         feature_refs=refs, label_column=SPEND_LABEL)

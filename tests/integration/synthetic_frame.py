"""A synthetic TrainingFrame with a learnable fraud signal, for training and gate tests.

Built by hand (no Feast) so the MLflow side is tested on its own, fast and deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glue.features import TrainingFrame

FEATURES = ["amount", "txn_count_1d", "merchant_fraud_rate_7d", "channel", "card_present", "event_hour"]


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
    hour = ts.hour.to_numpy().astype("int64")
    logit = (-7.2 + 1.5 * np.log(amount / 33) + 0.4 * count + 40 * rate
             + 1.2 * (channel == "online") - 1.0 * card_present + 1.0 * (hour < 6))
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
        "event_hour": hour,
        "is_fraud": is_fraud,
    })
    refs = ["customer_daily:txn_count_1d", "merchant_daily:merchant_fraud_rate_7d",
            "transaction_request:amount", "transaction_request:channel",
            "transaction_request:card_present", "transaction_request:event_hour"]
    return TrainingFrame(df=df, feature_columns=list(FEATURES), feature_service="fraud_model_v1",
                         feature_refs=refs)

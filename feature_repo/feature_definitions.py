# Feature definitions of the card-issuer demo: entities, sources, views, the fraud label view and
# the feature services of its two models (params.yaml `models:`).
#
# Declarations only. The daily snapshot tables these views read are computed by the project's
# transformation step (transform.py, run by `glue features`): one row per entity and snapshot,
# where the snapshot at day D 00:00 UTC aggregates only transactions strictly before D. A
# point-in-time join therefore gives every event the aggregates of the days before its own, never
# anything from its own future.

import os
from datetime import timedelta
from pathlib import Path

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    LabelView,
    Project,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

project = Project(
    name="fraud", description="Card issuer: customer and merchant features, fraud and spend models"
)

# The card holder and the merchant of a transaction. Their ids are integers in the raw batches.
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A card holder",
)
merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="A merchant accepting card payments",
)
# One card transaction: what the fraud label is about.
transaction = Entity(
    name="transaction",
    join_keys=["transaction_id"],
    value_type=ValueType.STRING,
    description="One card transaction (the event the fraud model scores)",
)

# Where the tables live: parquet files, on every profile (the local DuckDB store reads them from the
# project's data/features; prod and Ray read the same files from a shared folder, GLUE_FEATURES_DIR,
# the variable glue reads too). Paths are made absolute here because Feast's DuckDB and Ray stores
# resolve a relative path against the reading process's working directory, not this repo.
_HERE = Path(__file__).resolve().parent
_FEATURES_DIR = (_HERE / os.environ.get("GLUE_FEATURES_DIR", "../data/features")).resolve()
_RAW_DIR = (_HERE / os.environ.get("GLUE_RAW_DIR", "../data/raw")).resolve()


def _snapshot_source(table: str, description: str) -> FileSource:
    """The batch source of one snapshot table (written by the transformation step)."""
    return FileSource(
        name=f"{table}_source",
        path=str(_FEATURES_DIR / f"{table}.parquet"),
        timestamp_field="event_timestamp",
        description=description,
    )


customer_daily_source = _snapshot_source(
    "customer_daily", "Daily per-customer aggregates of the transactions before each snapshot day"
)
merchant_daily_source = _snapshot_source(
    "merchant_daily", "Daily per-merchant aggregates and fraud rate from labels known at the snapshot"
)

# A snapshot is taken every day at 00:00 UTC; two days of ttl let a transaction fall back to
# yesterday's snapshot if today's has not been computed yet, and no further.
SNAPSHOT_TTL = timedelta(days=2)

customer_transactions = FeatureView(
    name="customer_transactions",
    description="How the card holder spent in the last 1, 7 and 30 days (before the snapshot day)",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="txn_count_1d", dtype=Int64, description="Transactions on the previous day"),
        Field(name="txn_count_7d", dtype=Int64, description="Transactions in the previous 7 days"),
        Field(name="txn_count_30d", dtype=Int64, description="Transactions in the previous 30 days"),
        Field(name="amount_sum_1d", dtype=Float64, description="Amount spent on the previous day"),
        Field(name="amount_sum_7d", dtype=Float64, description="Amount spent in the previous 7 days"),
        Field(name="amount_sum_30d", dtype=Float64, description="Amount spent in the previous 30 days"),
        Field(name="amount_mean_30d", dtype=Float64, description="Mean amount, previous 30 days"),
        Field(name="amount_std_30d", dtype=Float64, description="Population std of amounts, 30 days"),
        Field(name="amount_max_30d", dtype=Float64, description="Largest amount, previous 30 days"),
        Field(name="distinct_merchants_7d", dtype=Int64, description="Merchants paid in 7 days"),
        Field(name="online_share_30d", dtype=Float64, description="Share of online transactions, 30 days"),
        Field(name="card_not_present_share_30d", dtype=Float64, description="Share without the card"),
        Field(name="hours_since_last_txn", dtype=Float64, description="Since the last transaction"),
    ],
    online=True,
    source=customer_daily_source,
    tags={"team": "fraud", "granularity": "daily"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    description="Merchant activity and fraud history, from labels already known at the snapshot",
    entities=[merchant],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="txn_count_7d", dtype=Int64, description="Transactions in the previous 7 days"),
        Field(name="txn_count_30d", dtype=Int64, description="Transactions in the previous 30 days"),
        Field(name="amount_mean_30d", dtype=Float64, description="Mean amount, previous 30 days"),
        Field(
            name="labelled_count_30d",
            dtype=Int64,
            description="Transactions of the previous 30 days whose label was known at the snapshot",
        ),
        Field(
            name="fraud_rate_30d",
            dtype=Float64,
            description="Fraud share among those labelled transactions (0 when none is labelled yet)",
        ),
    ],
    online=True,
    source=merchant_daily_source,
    tags={"team": "fraud", "granularity": "daily"},
)

# What the scoring request itself carries: the transaction being decided on, with its time (the
# same column the training rows carry as their event time).
transaction_request = RequestSource(
    name="transaction_request",
    description="Fields of the transaction being scored, known at request time",
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="channel", dtype=String),
        Field(name="card_present", dtype=Bool),
        Field(name="event_timestamp", dtype=UnixTimestamp),
    ],
)


@on_demand_feature_view(
    sources=[customer_transactions[["amount_mean_30d", "amount_std_30d"]], transaction_request],
    schema=[
        Field(name="amount_to_customer_mean_ratio", dtype=Float64),
        Field(name="amount_zscore", dtype=Float64),
        Field(name="log_amount", dtype=Float64),
        Field(name="is_online", dtype=Int64),
        Field(name="is_night", dtype=Int64),
        Field(name="card_not_present", dtype=Int64),
    ],
    mode="python",
    description="The transaction against the card holder's habits; NaN ratios for customers without history",
)
def transaction_request_features(inputs: dict[str, list]) -> dict[str, list]:
    # Python mode (columns as lists, not a DataFrame): the online path scores one transaction at a
    # time, and a pandas round trip would cost more than the rest of the request together.
    import math

    def number(value) -> float:
        return math.nan if value is None else float(value)

    # Feast stores this function with the registry; it must not refer to module-level names.
    out: dict[str, list] = {
        name: []
        for name in ("amount_to_customer_mean_ratio", "amount_zscore", "log_amount", "is_online",
                     "is_night", "card_not_present")
    }
    def utc_hour(moment) -> int:
        # a datetime (pandas Timestamp offline, datetime online; naive means UTC) or epoch seconds
        if isinstance(moment, int | float):
            return int(moment // 3600 % 24)
        offset = moment.utcoffset()
        return (moment - offset).hour if offset is not None else moment.hour

    for amount, mean, std, channel, moment, present in zip(
        inputs["amount"], inputs["amount_mean_30d"], inputs["amount_std_30d"], inputs["channel"],
        inputs["event_timestamp"], inputs["card_present"], strict=True,
    ):
        hour = utc_hour(moment)
        amount, mean, std = float(amount), number(mean), number(std)
        # NaN ratio for a customer without history (no mean, or a mean of 0).
        out["amount_to_customer_mean_ratio"].append(amount / mean if mean > 0 else math.nan)
        # A floor of 1 currency unit keeps the score finite for customers with constant amounts.
        out["amount_zscore"].append((amount - mean) / max(std, 1.0) if not math.isnan(std) else math.nan)
        out["log_amount"].append(math.log1p(amount))
        out["is_online"].append(int(channel == "online"))
        out["is_night"].append(int(hour < 6))
        out["card_not_present"].append(int(not present))
    return out


# The fraud label, as Feast label view: one row per transaction, delivered a week late. The rows
# are the raw label batches (data/raw/labels, DVC-versioned); `label_timestamp` is when a label
# became known, so a training set "as of" a day holds only the labels known then.
transaction_labels = LabelView(
    name="transaction_labels",
    entities=[transaction],
    schema=[
        Field(name="transaction_id", dtype=String),
        Field(name="is_fraud", dtype=Int64, description="1: the card holder disputed it as fraud"),
    ],
    source=FileSource(
        name="transaction_labels_source",
        path=str(_RAW_DIR / "labels"),
        timestamp_field="event_timestamp",
        created_timestamp_column="label_timestamp",
        description="Fraud labels, one parquet file per transaction day",
    ),
    online=False,
    description="Fraud labels of card transactions (chargebacks), known about a week after the transaction",
    tags={"team": "fraud", "feast.io/field-role:is_fraud": "label", "feast.io/label-values:is_fraud": "1 0"},
)


# The models' inputs, versioned: each model is trained and served on exactly one service.
# Change a feature -> add fraud_model_v2 next to it, so models trained on v1 keep working.
fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    description="Inputs of the card-fraud model, version 1",
    features=[customer_transactions, merchant_risk, transaction_request_features],
    tags={"model": "fraud"},
)

# The card holder's spending habits, reused from the fraud model: the customer-spend model predicts
# what the holder will spend in the next 7 days (a regression; its label is a labels source).
spend_model_v1 = FeatureService(
    name="spend_model_v1",
    description="Inputs of the customer-spend model, version 1",
    features=[customer_transactions],
    tags={"model": "customer-spend"},
)

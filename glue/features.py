"""The feature stage: daily snapshot aggregates, registered and served through Feast.

Why daily snapshots: a snapshot at day D 00:00 UTC aggregates only transactions strictly before D,
so Feast's point-in-time join (feature timestamp <= transaction time) can never hand a transaction
anything from its own day or later. Fraud labels arrive late; the merchant fraud rate of a snapshot
counts only labels whose label_timestamp is <= the snapshot. Training and serving read the same
feature service (params.yaml `features.feature_service`), offline and online.

The aggregates are computed here with pandas/numpy on dense (entity x day) arrays; Feast stores,
joins and serves them (glue/feature_store.py is the only module touching Feast).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glue.errors import GlueError

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from glue.settings import Settings

CUSTOMER_TABLE = "customer_daily"
MERCHANT_TABLE = "merchant_daily"
LABEL_COLUMN = "is_fraud"
# What the scoring request carries besides the entity keys (feature_repo: transaction_request).
REQUEST_COLUMNS = ("amount", "channel", "card_present", "event_hour")
ENTITY_COLUMNS = ("transaction_id", "customer_id", "merchant_id", "event_timestamp")

_DAY = np.timedelta64(1, "D")
_NIGHT_END_HOUR = 6


@dataclass(frozen=True)
class FeaturesResult:
    """What `build_features` wrote, registered and materialized, and how long each part took."""

    customer_rows: int
    merchant_rows: int
    first_snapshot: dt.datetime
    last_snapshot: dt.datetime
    feature_views: list[str]
    feature_services: list[str]
    materialized_start: dt.datetime
    materialized_end: dt.datetime
    tables: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (
            f"features: {self.customer_rows} customer and {self.merchant_rows} merchant snapshot rows, "
            f"snapshots {self.first_snapshot:%Y-%m-%d} .. {self.last_snapshot:%Y-%m-%d}\n"
            f"feast apply: views {', '.join(self.feature_views)}; "
            f"services {', '.join(self.feature_services)}\n"
            f"materialized {self.materialized_start:%Y-%m-%d %H:%M} .. "
            f"{self.materialized_end:%Y-%m-%d %H:%M} UTC to the online store\n"
            f"time: {timing}"
        )


@dataclass(frozen=True)
class TrainingFrame:
    """Labelled transactions with their point-in-time features, ready for a model."""

    # one row per labelled transaction, sorted by event_timestamp: ids, amount/channel/card_present,
    # the feature columns and the label
    df: pd.DataFrame
    feature_columns: list[str]  # the model's inputs, in a fixed order, as Feast names them
    feature_service: str
    feature_refs: list[str]
    label_column: str = LABEL_COLUMN

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name for a design matrix
        return self.df[self.feature_columns]

    @property
    def y(self) -> pd.Series:
        return self.df[self.label_column]


def build_features(settings: Settings) -> FeaturesResult:
    """The stage: snapshot tables from the validated batches, `feast apply`, materialize online."""
    from glue import feature_store

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    tx = read_transactions(settings)
    labels = read_labels(settings)
    seconds["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    customers = customer_daily(tx)
    merchants = merchant_daily(tx, labels)
    seconds["aggregate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    store = feature_store.open_store(settings)
    seconds["open"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tables = {
        CUSTOMER_TABLE: feature_store.write_snapshot_table(settings, store, CUSTOMER_TABLE, customers,
                                                           keys=("customer_id",)),
        MERCHANT_TABLE: feature_store.write_snapshot_table(settings, store, MERCHANT_TABLE, merchants,
                                                           keys=("merchant_id",)),
    }
    seconds["write"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    applied = feature_store.apply_repo(settings, store)
    seconds["apply"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    last = customers["event_timestamp"].max().to_pydatetime()
    window = feature_store.materialize(store, last)
    seconds["materialize"] = time.perf_counter() - t0

    return FeaturesResult(
        customer_rows=len(customers),
        merchant_rows=len(merchants),
        first_snapshot=customers["event_timestamp"].min().to_pydatetime(),
        last_snapshot=last,
        feature_views=[*applied.feature_views, *applied.on_demand_feature_views],
        feature_services=applied.feature_services,
        materialized_start=window.start,
        materialized_end=window.end,
        tables=tables,
        seconds=seconds,
    )


def training_frame(
    settings: Settings, *, until: dt.datetime | None = None, store: FeatureStore | None = None
) -> TrainingFrame:
    """Transactions whose label is known at `until` (default: all labels), features joined by Feast."""
    import pandas as pd

    from glue import feature_store

    store = store or feature_store.open_store(settings)
    service = settings.params.features.feature_service
    columns, refs = feature_store.feature_columns(store, service)

    tx = read_transactions(settings)
    labels = read_labels(settings)
    if until is not None:
        cutoff = pd.Timestamp(until)
        cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
        labels = labels[labels["label_timestamp"] <= cutoff]
    known = tx.merge(labels[["transaction_id", LABEL_COLUMN]], on="transaction_id", how="inner")
    if known.empty:
        raise GlueError(
            f"no labelled transactions in {settings.validated_dir / 'transactions'} with labels from "
            f"{settings.raw_labels_dir}" + (f" known at {until}" if until is not None else "")
        )
    joined = _join_features(settings, store, service, known, extra=[LABEL_COLUMN])
    keep = [*ENTITY_COLUMNS, *REQUEST_COLUMNS[:3], *columns, LABEL_COLUMN]
    return TrainingFrame(
        df=joined[keep], feature_columns=columns, feature_service=service, feature_refs=refs
    )


def scoring_frame(
    settings: Settings, tx: pd.DataFrame, store: FeatureStore | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Point-in-time features of given transactions, labelled or not: what the model saw then.

    Returns the rows in event order (ids, request fields, feature columns) and the column list.
    Used by monitoring for the current window and the window whose labels arrived later.
    """
    from glue import feature_store

    store = store or feature_store.open_store(settings)
    service = settings.params.features.feature_service
    columns, _ = feature_store.feature_columns(store, service)
    if tx.empty:
        raise GlueError("no transactions to featurize")
    joined = _join_features(settings, store, service, tx)
    return joined[[*ENTITY_COLUMNS, *REQUEST_COLUMNS[:3], *columns]], columns


def _join_features(settings: Settings, store: FeatureStore, service: str, tx: pd.DataFrame,
                   extra: list[str] | None = None) -> pd.DataFrame:
    """Feast's point-in-time join of the feature service onto the transactions, none lost."""
    import pandas as pd

    from glue import feature_store

    entity_df = request_frame(tx)[[*ENTITY_COLUMNS, *REQUEST_COLUMNS, *(extra or [])]]
    # Strings as categories: Feast's dask join hashes object columns slowly (~35% of its time).
    strings = ["transaction_id", "channel"]
    entity_df = entity_df.astype({c: "category" for c in strings})
    joined = pd.concat(
        [feature_store.historical_features(store, part, service) for part in _unique_key_parts(entity_df)],
        ignore_index=True,
    )
    if len(joined) != len(entity_df):
        raise GlueError(
            f"Feast returned {len(joined)} rows for {len(entity_df)} transactions: check that every "
            f"transaction has a snapshot row in {settings.features_dir} (rerun `glue features`)"
        )
    joined = joined.astype({c: "object" for c in strings})
    return joined.sort_values(["event_timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def _unique_key_parts(entity_df: pd.DataFrame) -> list[pd.DataFrame]:
    """Split the entity rows so no part repeats a (customer, timestamp) or (merchant, timestamp).

    Feast's file offline store keeps one row per (a view's join key, event timestamp): two
    transactions of one card at the same instant, at different merchants, would lose one. Such
    collisions are rare, so nearly every row lands in the first part.
    """
    parts = []
    remaining = entity_df
    while len(remaining):
        first = ~(remaining.duplicated(["customer_id", "event_timestamp"])
                  | remaining.duplicated(["merchant_id", "event_timestamp"]))
        parts.append(remaining[first])
        remaining = remaining[~first]
    return parts


def online_features(
    settings: Settings, rows: list[dict[str, Any]], store: FeatureStore | None = None
) -> pd.DataFrame:
    """The model's feature columns for transactions being scored now, from the online store.

    Each row holds customer_id, merchant_id, amount, channel, card_present and either
    event_timestamp or event_hour. Returns one row per input row, columns as in TrainingFrame.
    """
    import pandas as pd

    from glue import feature_store

    store = store or feature_store.open_store(settings)
    service = settings.params.features.feature_service
    columns, _ = feature_store.feature_columns(store, service)
    frame = request_frame(pd.DataFrame(rows))
    entity_rows = [
        {
            "customer_id": int(r.customer_id),
            "merchant_id": int(r.merchant_id),
            "amount": float(r.amount),
            "channel": str(r.channel),
            "card_present": bool(r.card_present),
            "event_hour": int(r.event_hour),
        }
        for r in frame.itertuples(index=False)
    ]
    result = feature_store.online_features(store, entity_rows, service)
    return result[columns].astype("float64")


def request_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Add the request-time field `event_hour` (UTC hour of event_timestamp) if it is missing."""
    import pandas as pd

    missing = {"customer_id", "merchant_id", "amount", "channel", "card_present"} - set(df.columns)
    if "event_hour" not in df.columns and "event_timestamp" not in df.columns:
        missing.add("event_timestamp or event_hour")
    if missing:
        raise GlueError(f"transactions to featurize lack column(s): {', '.join(sorted(missing))}")
    out = df.copy()
    if "event_hour" not in out.columns:
        out["event_hour"] = pd.to_datetime(out["event_timestamp"], utc=True).dt.hour.astype("int64")
    return out


# --- reading the inputs --------------------------------------------------------------------------


def read_transactions(settings: Settings) -> pd.DataFrame:
    """All validated transaction batches, in event order."""
    folder = Path(settings.validated_dir) / "transactions"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise GlueError(f"no validated batches in {folder}; run `glue validate-batches` first")
    return _concat(files).sort_values(["event_timestamp", "transaction_id"], kind="stable")


def read_labels(settings: Settings) -> pd.DataFrame:
    """All fraud labels delivered so far; consumers filter on label_timestamp themselves."""
    import pandas as pd

    files = sorted(Path(settings.raw_labels_dir).glob("*.parquet"))
    if not files:
        return pd.DataFrame(
            {
                "transaction_id": pd.Series(dtype="object"),
                "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                "label_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                LABEL_COLUMN: pd.Series(dtype="int64"),
            }
        )
    return _concat(files)


def _concat(files: list[Path]) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


# --- the aggregates ------------------------------------------------------------------------------


def customer_daily(tx: pd.DataFrame) -> pd.DataFrame:
    """Per-customer snapshot rows: for each day D, aggregates over the w days before D.

    One row per customer and snapshot day for customers with a transaction in the 30 days before
    it; the last snapshot is the day after the last batch (what serving uses now). See
    `_Grid.frame` for the all-null rows of customers without history.
    """
    grid = _Grid(tx, "customer_id")
    amount = tx["amount"].to_numpy(dtype="float64")
    online = (tx["channel"].to_numpy() == "online").astype("float64")
    cnp = (~tx["card_present"].to_numpy(dtype=bool)).astype("float64")

    count = grid.daily(np.ones(len(tx)))
    total = grid.daily(amount)
    squares = grid.daily(amount**2)
    n30 = grid.window(count, 30)
    s30 = grid.window(total, 30)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean30 = s30 / n30
        var30 = np.maximum(grid.window(squares, 30) / n30 - mean30**2, 0.0)
        online30 = grid.window(grid.daily(online), 30) / n30
        cnp30 = grid.window(grid.daily(cnp), 30) / n30
    columns = {
        "txn_count_1d": grid.window(count, 1).astype("int64"),
        "txn_count_7d": grid.window(count, 7).astype("int64"),
        "txn_count_30d": n30.astype("int64"),
        "amount_sum_1d": grid.window(total, 1),
        "amount_sum_7d": grid.window(total, 7),
        "amount_sum_30d": s30,
        "amount_mean_30d": mean30,
        "amount_std_30d": np.sqrt(var30),
        "amount_max_30d": grid.window_max(amount, 30),
        "distinct_merchants_7d": grid.window_distinct(tx["merchant_id"].to_numpy(), 7).astype("int64"),
        "online_share_30d": online30,
        "card_not_present_share_30d": cnp30,
        "hours_since_last_txn": grid.hours_since_last(),
    }
    return grid.frame(columns, active=n30 > 0)


def merchant_daily(tx: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per-merchant snapshot rows; the fraud rate counts only labels known at the snapshot.

    A labelled transaction of day d with label time L counts for the snapshots D with
    d < D <= d + 30 days and L <= D.
    """
    import pandas as pd

    grid = _Grid(tx, "merchant_id")
    count = grid.daily(np.ones(len(tx)))
    n30 = grid.window(count, 30)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean30 = grid.window(grid.daily(tx["amount"].to_numpy(dtype="float64")), 30) / n30

    known = labels.drop_duplicates("transaction_id").set_index("transaction_id")
    lab = tx[["transaction_id"]].reset_index(drop=True).join(
        known[["label_timestamp", LABEL_COLUMN]], on="transaction_id"
    )
    has = lab["label_timestamp"].notna().to_numpy()
    known_day = np.zeros(len(tx), dtype="int64")
    if has.any():
        ts = pd.to_datetime(lab.loc[has, "label_timestamp"], utc=True)
        # the first snapshot index D with L <= D, i.e. the day index of L rounded up to midnight
        ns = (ts - grid.origin).to_numpy().astype("timedelta64[ns]").astype("int64")
        day_ns = 86_400 * 10**9
        known_day[has] = -(-ns // day_ns)
    first = np.maximum(grid.day_index + 1, known_day)
    fraud = lab[LABEL_COLUMN].fillna(0).to_numpy(dtype="float64")
    labelled = grid.ranged(first, grid.day_index + 30, has.astype("float64"))
    frauds = grid.ranged(first, grid.day_index + 30, fraud * has)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(labelled > 0, frauds / labelled, 0.0)
    columns = {
        "txn_count_7d": grid.window(count, 7).astype("int64"),
        "txn_count_30d": n30.astype("int64"),
        "amount_mean_30d": mean30,
        "labelled_count_30d": labelled.astype("int64"),
        "fraud_rate_30d": rate,
    }
    return grid.frame(columns, active=n30 > 0)


class _Grid:
    """Dense (entity x snapshot) arrays over the days of a transaction frame.

    Day index k is the k-th UTC day from the first transaction's day (the origin). Snapshot j
    (j = 0 .. n_days) is at origin + j days and sees transaction days 0 .. j-1 only; every array
    returned has one column per snapshot.
    """

    def __init__(self, tx: pd.DataFrame, key: str) -> None:
        import pandas as pd

        if tx.empty:
            raise GlueError("no transactions to aggregate")
        self.key = key
        ts = pd.to_datetime(tx["event_timestamp"], utc=True)
        self.origin = ts.min().floor("D")
        self.ts_ns = (ts - self.origin).to_numpy().astype("timedelta64[ns]").astype("int64")
        self.day_index = self.ts_ns // (86_400 * 10**9)
        self.n_days = int(self.day_index.max()) + 1
        self.ids, self.entity = np.unique(tx[key].to_numpy(), return_inverse=True)

    def daily(self, values: np.ndarray) -> np.ndarray:
        """Per-entity, per-day sums (n_entities x n_days)."""
        out = np.zeros((len(self.ids), self.n_days))
        np.add.at(out, (self.entity, self.day_index), values)
        return out

    def window(self, daily: np.ndarray, days: int) -> np.ndarray:
        """Sum over days [j-days, j-1] for every snapshot j = 1..n_days (n_entities x n_days)."""
        cs = np.concatenate([np.zeros((daily.shape[0], 1)), np.cumsum(daily, axis=1)], axis=1)
        j = np.arange(0, self.n_days + 1)
        return cs[:, j] - cs[:, np.maximum(j - days, 0)]

    def window_max(self, values: np.ndarray, days: int) -> np.ndarray:
        """Max over days [j-days, j-1]; NaN where the entity had no transaction."""
        import pandas as pd

        daily = np.full((len(self.ids), self.n_days), -np.inf)
        np.maximum.at(daily, (self.entity, self.day_index), values)
        rolled = pd.DataFrame(daily.T).rolling(days, min_periods=1).max().to_numpy().T
        rolled[np.isinf(rolled)] = np.nan
        # row k of `rolled` is the max over days k-days+1..k, i.e. snapshot j = k+1
        return np.concatenate([np.full((len(self.ids), 1), np.nan), rolled], axis=1)

    def window_distinct(self, other: np.ndarray, days: int) -> np.ndarray:
        """Number of distinct `other` values per entity over days [j-days, j-1]."""
        import pandas as pd

        pairs = pd.DataFrame({"e": self.entity, "o": other, "d": self.day_index}).drop_duplicates()
        # a (entity, other) pair seen on day d counts for the snapshots d+1 .. d+days
        spread = pairs.loc[pairs.index.repeat(days)].copy()
        spread["j"] = spread["d"].to_numpy() + np.tile(np.arange(1, days + 1), len(pairs))
        spread = spread[spread["j"] <= self.n_days].drop_duplicates(["e", "o", "j"])
        out = np.zeros((len(self.ids), self.n_days + 1))
        np.add.at(out, (spread["e"].to_numpy(), spread["j"].to_numpy()), 1.0)
        return out

    def hours_since_last(self) -> np.ndarray:
        """Hours from the entity's last transaction before snapshot j to snapshot j."""
        last = np.full((len(self.ids), self.n_days), -1, dtype="int64")
        np.maximum.at(last, (self.entity, self.day_index), self.ts_ns)
        last = np.maximum.accumulate(last, axis=1)  # latest transaction on or before day k
        last = np.concatenate([np.full((len(self.ids), 1), -1, dtype="int64"), last], axis=1)
        snapshot_ns = np.arange(0, self.n_days + 1, dtype="int64") * 86_400 * 10**9
        hours = (snapshot_ns[None, :] - last) / 3.6e12
        return np.where(last >= 0, hours, np.nan)

    def ranged(self, first: np.ndarray, last: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-entity sums of values[i] over the snapshots first[i]..last[i] (clipped to 0..n)."""
        lo = np.clip(first, 0, self.n_days + 1)
        hi = np.clip(last, 0, self.n_days) + 1
        ok = lo < hi
        diff = np.zeros((len(self.ids), self.n_days + 2))
        np.add.at(diff, (self.entity[ok], lo[ok]), values[ok])
        np.add.at(diff, (self.entity[ok], hi[ok]), -values[ok])
        return np.cumsum(diff, axis=1)[:, : self.n_days + 1]

    def frame(self, columns: dict[str, np.ndarray], active: np.ndarray) -> pd.DataFrame:
        """Long table: one row per (snapshot, entity), sorted by time then entity id.

        Rows for entities active in the window, plus an all-null row at snapshot D for an entity
        without history that transacts on day D. The null row carries no information (its
        values are what "no features" means online too); it exists because Feast's file offline
        store drops an entity row whose only snapshots lie after it instead of returning nulls.
        """
        import pandas as pd

        today = np.zeros_like(active)
        today[self.entity, self.day_index] = True
        j, e = np.nonzero((active | today).T)  # row-major over snapshots: sorted (snapshot, entity)
        empty = ~active[e, j]
        snapshots = self.origin + pd.to_timedelta(j, unit="D")
        data: dict[str, Any] = {
            self.key: self.ids[e].astype("int64"),
            "event_timestamp": pd.DatetimeIndex(snapshots).as_unit("ns"),
        }
        for name, values in columns.items():
            picked = values[e, j]
            if picked.dtype.kind == "i":
                data[name] = pd.array(picked, dtype="Int64")
                data[name][empty] = pd.NA
            else:
                data[name] = np.where(empty, np.nan, picked)
        return pd.DataFrame(data)

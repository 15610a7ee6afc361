"""The demo project's transformation step: raw transaction batches -> the feature views' tables.

Project code, not glue: params.yaml `features.transform` points `glue features` here, and glue
calls :func:`build_tables` with the validated batches, then writes each returned table where the
Feast data source of that name reads (a parquet file locally, a PostgreSQL table on prod), runs
`feast apply` and materializes the online store.

Why daily snapshots: a snapshot at day D 00:00 UTC aggregates only transactions strictly before D,
so Feast's point-in-time join (feature timestamp <= transaction time) can never hand a transaction
anything from its own day or later. Fraud labels arrive late; the merchant fraud rate of a snapshot
counts only labels whose label_timestamp is <= the snapshot. The aggregates are computed with
pandas/numpy on dense (entity x day) arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glue.errors import GlueError

if TYPE_CHECKING:
    import pandas as pd

    from glue.features import TransformInputs

LABEL_COLUMN = "is_fraud"
LABELS_DIR = "labels"  # data/raw/labels: the fraud labels (feature_definitions.transaction_labels)


def build_tables(inputs: TransformInputs) -> dict[str, pd.DataFrame]:
    """The snapshot tables, keyed by the Feast data source that reads each."""
    tx = inputs.events
    return {
        "customer_daily_source": customer_daily(tx),
        "merchant_daily_source": merchant_daily(tx, read_labels(inputs.raw_dir / LABELS_DIR)),
    }


def read_labels(folder: Path) -> pd.DataFrame:
    """All fraud labels delivered so far (one parquet file per transaction day)."""
    import pandas as pd

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        return pd.DataFrame({"transaction_id": pd.Series(dtype="object"),
                             "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                             "label_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
                             LABEL_COLUMN: pd.Series(dtype="int64")})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)




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

"""The demo project's transformation step: raw transaction batches -> the feature views' tables.

Project code, not glue: params.yaml `features.transform` points `glue features` here, and glue
calls :func:`build_tables` with the validated batches, then writes each returned table where the
Feast data source of that name reads (a parquet file locally, a PostgreSQL table on prod), runs
`feast apply` and materializes the online store.

Why daily snapshots: a snapshot at day D 00:00 UTC aggregates only transactions strictly before D,
so Feast's point-in-time join (feature timestamp <= transaction time) can never hand a transaction
anything from its own day or later. Fraud labels arrive late; the merchant fraud rate of a snapshot
counts only labels whose label_timestamp is <= the snapshot. The aggregates are computed with
pandas/numpy on dense (entity x day) arrays, one partition of the entities at a time (see
`CELL_BUDGET`): the dense arrays of all entities at once grew with the data set (17.5 GB at 10
million transactions), those of one partition do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from glue.errors import GlueError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from glue.features import TransformInputs

LABEL_COLUMN = "is_fraud"
LABELS_DIR = "labels"  # data/raw/labels: the fraud labels (feature_definitions.transaction_labels)

# The most (entity x snapshot) cells a partition's dense arrays may have. A partition's columns take
# about 250 bytes a cell while they are built (some 30 float64 arrays and their temporaries), so this
# bounds that working memory (~250 MB at 1M cells) whatever the number of entities; what still grows
# with the data is the transactions themselves and the output table. The budget changes how many
# partitions there are, never the result; at 60 days a partition still has some 16,000 entities, so
# more partitions cost little time.
CELL_BUDGET = 1_000_000


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


def customer_daily(tx: pd.DataFrame, *, cell_budget: int = CELL_BUDGET) -> pd.DataFrame:
    """Per-customer snapshot rows: for each day D, aggregates over the w days before D.

    One row per customer and snapshot day for customers with a transaction in the 30 days before
    it; the last snapshot is the day after the last batch (what serving uses now). See
    `_Grid.rows` for the all-null rows of customers without history. `cell_budget` bounds the size
    of a partition (see `CELL_BUDGET`); it changes the memory used, never the result.
    """
    days = _Days(tx)
    values = {
        "amount": tx["amount"].to_numpy(dtype="float64"),
        "online": (tx["channel"].to_numpy() == "online").astype("float64"),
        "cnp": (~tx["card_present"].to_numpy(dtype=bool)).astype("float64"),
        "merchant_id": tx["merchant_id"].to_numpy(),
    }
    return _partitioned(days, tx["customer_id"].to_numpy(), values, _customer_columns, "customer_id",
                        cell_budget)


def _customer_columns(grid: _Grid, part: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The customer_daily columns of one partition and where its customers are active."""
    amount = part["amount"]
    count = grid.daily(np.ones(len(amount)))
    total = grid.daily(amount)
    squares = grid.daily(amount**2)
    n30 = grid.window(count, 30)
    s30 = grid.window(total, 30)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean30 = s30 / n30
        var30 = np.maximum(grid.window(squares, 30) / n30 - mean30**2, 0.0)
        online30 = grid.window(grid.daily(part["online"]), 30) / n30
        cnp30 = grid.window(grid.daily(part["cnp"]), 30) / n30
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
        "distinct_merchants_7d": grid.window_distinct(part["merchant_id"], 7).astype("int64"),
        "online_share_30d": online30,
        "card_not_present_share_30d": cnp30,
        "hours_since_last_txn": grid.hours_since_last(),
    }
    return columns, n30 > 0


def merchant_daily(tx: pd.DataFrame, labels: pd.DataFrame, *, cell_budget: int = CELL_BUDGET) -> pd.DataFrame:
    """Per-merchant snapshot rows; the fraud rate counts only labels known at the snapshot.

    A labelled transaction of day d with label time L counts for the snapshots D with
    d < D <= d + 30 days and L <= D. The labels are joined to the transactions once, before the
    merchants are partitioned; `cell_budget` as in :func:`customer_daily`.
    """
    days = _Days(tx)
    has, known_day, fraud = _label_arrays(tx, labels, days.origin)
    values = {
        "amount": tx["amount"].to_numpy(dtype="float64"),
        "has": has,
        "known_day": known_day,
        "fraud": fraud,
    }
    return _partitioned(days, tx["merchant_id"].to_numpy(), values, _merchant_columns, "merchant_id",
                        cell_budget)


def _label_arrays(
    tx: pd.DataFrame, labels: pd.DataFrame, origin: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per transaction: whether it has a label, the first snapshot index that knows the label, fraud 0/1."""
    import pandas as pd

    known = labels.drop_duplicates("transaction_id").set_index("transaction_id")
    lab = tx[["transaction_id"]].reset_index(drop=True).join(
        known[["label_timestamp", LABEL_COLUMN]], on="transaction_id"
    )
    has = lab["label_timestamp"].notna().to_numpy()
    known_day = np.zeros(len(tx), dtype="int64")
    if has.any():
        ts = pd.to_datetime(lab.loc[has, "label_timestamp"], utc=True)
        # the first snapshot index D with L <= D, i.e. the day index of L rounded up to midnight
        ns = (ts - origin).to_numpy().astype("timedelta64[ns]").astype("int64")
        day_ns = 86_400 * 10**9
        known_day[has] = -(-ns // day_ns)
    fraud = lab[LABEL_COLUMN].fillna(0).to_numpy(dtype="float64")
    return has, known_day, fraud


def _merchant_columns(grid: _Grid, part: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The merchant_daily columns of one partition and where its merchants are active."""
    has = part["has"]
    count = grid.daily(np.ones(len(has)))
    n30 = grid.window(count, 30)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean30 = grid.window(grid.daily(part["amount"]), 30) / n30
    first = np.maximum(grid.day_index + 1, part["known_day"])
    labelled = grid.ranged(first, grid.day_index + 30, has.astype("float64"))
    frauds = grid.ranged(first, grid.day_index + 30, part["fraud"] * has)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(labelled > 0, frauds / labelled, 0.0)
    columns = {
        "txn_count_7d": grid.window(count, 7).astype("int64"),
        "txn_count_30d": n30.astype("int64"),
        "amount_mean_30d": mean30,
        "labelled_count_30d": labelled.astype("int64"),
        "fraud_rate_30d": rate,
    }
    return columns, n30 > 0


class _Days:
    """The snapshot calendar of the whole transaction frame, shared by every partition.

    Day index k is the k-th UTC day from the first transaction's day (the origin). Snapshot j
    (j = 0 .. n_days) is at origin + j days and sees transaction days 0 .. j-1 only. Taken from the
    whole frame, never from a partition: a partition whose entities start later, or stop earlier,
    still has the same days and snapshots.
    """

    def __init__(self, tx: pd.DataFrame) -> None:
        import pandas as pd

        if tx.empty:
            raise GlueError("no transactions to aggregate")
        ts = pd.to_datetime(tx["event_timestamp"], utc=True)
        self.origin = ts.min().floor("D")
        self.ts_ns = (ts - self.origin).to_numpy().astype("timedelta64[ns]").astype("int64")
        self.day_index = self.ts_ns // (86_400 * 10**9)
        self.n_days = int(self.day_index.max()) + 1


def _entity_chunks(n_entities: int, n_days: int, cell_budget: int) -> list[tuple[int, int]]:
    """The partitions: [start, stop) ranges of the sorted entity ids with at most `cell_budget`
    (entity x snapshot) cells each (n_days + 1 snapshots an entity), at least one entity each."""
    per = max(1, cell_budget // (n_days + 1))
    return [(start, min(start + per, n_entities)) for start in range(0, n_entities, per)]


def _partitioned(
    days: _Days,
    keys: np.ndarray,
    values: dict[str, np.ndarray],
    columns_of: Callable[[_Grid, dict[str, np.ndarray]], tuple[dict[str, np.ndarray], np.ndarray]],
    key: str,
    cell_budget: int,
) -> pd.DataFrame:
    """The long table of `columns_of`, computed one partition of the entities at a time.

    `keys` and `values` are per-transaction arrays; `columns_of` gets a partition's `_Grid` and
    its rows of `values`. Only one partition's dense arrays are alive at a time; what is kept of
    a partition is its output rows (`_Rows`), assembled at the end by `_assemble`.
    """
    ids, entity = np.unique(keys, return_inverse=True)
    # The transactions grouped by entity, in their original order within an entity (a stable
    # sort): every (entity, day) cell then adds its values in the same order as over the whole
    # frame, so the float sums are the same bit for bit. A partition's rows are one slice of it.
    order = np.argsort(entity, kind="stable")
    row_start = np.concatenate([[0], np.cumsum(np.bincount(entity, minlength=len(ids)))])
    pieces: list[_Rows] = []
    for start, stop in _entity_chunks(len(ids), days.n_days, cell_budget):
        rows = order[row_start[start] : row_start[stop]]
        grid = _Grid(days, ids[start:stop], entity[rows] - start, rows)
        pieces.append(grid.rows(*columns_of(grid, {name: v[rows] for name, v in values.items()})))
    return _assemble(pieces, key, days.origin)


class _Rows(NamedTuple):
    """One partition's output rows, still as numpy arrays, sorted by (snapshot, entity id)."""

    snapshot: np.ndarray  # snapshot index j
    entity_id: np.ndarray
    empty: np.ndarray  # the all-null rows (see `_Grid.rows`)
    columns: dict[str, np.ndarray]


def _assemble(pieces: list[_Rows], key: str, origin: pd.Timestamp) -> pd.DataFrame:
    """Long table: one row per (snapshot, entity), sorted by time then entity id.

    Each piece is sorted by (snapshot, id) and the pieces cover increasing id ranges, so a stable
    sort by snapshot alone gives the (snapshot, id) order of the whole. The columns are gathered
    one at a time, each partition's copy dropped once gathered, to hold little more than one
    table at once.
    """
    import pandas as pd

    snapshot = np.concatenate([p.snapshot for p in pieces])
    order = np.argsort(snapshot, kind="stable")
    snapshot = snapshot[order]

    def gather(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)[order]

    empty = gather([p.empty for p in pieces])
    data: dict[str, Any] = {
        key: gather([p.entity_id for p in pieces]).astype("int64"),
        "event_timestamp": pd.DatetimeIndex(origin + pd.to_timedelta(snapshot, unit="D")).as_unit("ns"),
    }
    for name in list(pieces[0].columns):
        picked = gather([p.columns.pop(name) for p in pieces])
        if picked.dtype.kind == "i":
            data[name] = pd.array(picked, dtype="Int64")
            data[name][empty] = pd.NA
        else:
            data[name] = np.where(empty, np.nan, picked)
    # copy=False: the columns are fresh arrays; pandas' default would copy them all once more
    return pd.DataFrame(data, copy=False)


class _Grid:
    """Dense (entity x snapshot) arrays for one partition of the entities.

    Rows are the partition's entities (`ids`, sorted; `entity` maps each of its transactions to
    one), columns the snapshots of the whole frame (`_Days`): every array returned has n_days + 1
    columns, or n_days for the per-day ones, the same for every partition.
    """

    def __init__(self, days: _Days, ids: np.ndarray, entity: np.ndarray, rows: np.ndarray) -> None:
        self.n_days = days.n_days
        self.ids = ids
        self.entity = entity
        self.ts_ns = days.ts_ns[rows]
        self.day_index = days.day_index[rows]

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

    def rows(self, columns: dict[str, np.ndarray], active: np.ndarray) -> _Rows:
        """The partition's output rows, sorted by (snapshot, entity id); `_assemble` makes the table.

        Rows for entities active in the window, plus an all-null row at snapshot D for an entity
        without history that transacts on day D. The null row carries no information (its
        values are what "no features" means online too); it exists because Feast's file offline
        store drops an entity row whose only snapshots lie after it instead of returning nulls.
        """
        today = np.zeros_like(active)
        today[self.entity, self.day_index] = True
        j, e = np.nonzero((active | today).T)  # row-major over snapshots: sorted (snapshot, entity)
        return _Rows(j, self.ids[e], ~active[e, j], {name: values[e, j] for name, values in columns.items()})

"""The demo project's data generator: the deterministic card-transaction fraud data set.

Project code, not glue: params.yaml `data.generator` points `glue demo-data` (the `demo_data` stage
of dvc.yaml, and `glue simulate`) here, and glue calls ``generate(demo, raw_dir)`` with the
``demo:`` section of params.yaml. A project with real data has no generator: it `dvc add`s data/raw.

Why a generator and not a download: the demo must run offline, be identical for everyone (same
seed, byte-identical files, so DVC hashes match), and be able to inject a shift on a chosen day so
that drift detection, quality decay and retraining can be shown and tested.

The structure is realistic enough that per-customer and per-merchant rolling aggregates matter:
every customer has a home spending level, preferred categories and an online habit; merchants have
a category and a few are "compromised". Fraud comes in bursts on one card, far above the
customer's usual amount, often at night, online / card not present, or at compromised merchants.

Output (the data contract): ``<out>/transactions/YYYY-MM-DD.parquet`` and
``<out>/labels/YYYY-MM-DD.parquet`` (the fraud labels: the LabelView transaction_labels reads them),
one file each per transaction day; and ``<out>/spend_labels/YYYY-MM-DD.parquet``, the second model's
label: for each card holder who paid on the day before D, what they spent (legitimately) in the 7
days from D, known at D + 7 days; written for every D whose 7 days lie inside the data.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from glue.errors import GlueError

if TYPE_CHECKING:
    import pyarrow as pa


class DemoParams(BaseModel):
    """The `demo:` section of params.yaml: the shape of the generated data set."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    start_date: str = "2026-01-01"
    days: int = 60
    transactions_per_day: int = 1700
    customers: int = 5000
    merchants: int = 400
    fraud_rate: float = 0.015
    label_delay_days: int = 7
    shift_day: int | None = None
    shift_kind: Literal["none", "new_fraud_pattern", "spending_change"] = "none"

CHANNELS = ("online", "in_store", "atm")
CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "electronics",
    "fashion",
    "entertainment",
    "health",
    "digital_goods",
    "other",
)
SHIFT_KINDS = ("none", "new_fraud_pattern", "spending_change")

_ONLINE, _IN_STORE, _ATM = 0, 1, 2
_CAT = {name: i for i, name in enumerate(CATEGORIES)}
_DAY_MS = 86_400_000
_MS_NS = 1_000_000
_MAX_AMOUNT = 50_000.0
_LABEL_JITTER_MS = 4 * 3_600_000  # labels arrive up to 4 hours after the nominal delay
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.parquet$")

# How popular each category is, how expensive relative to a customer's home level, and how much
# more (or less) likely it is bought online than the customer's habit.
_CAT_POPULARITY = np.array([0.24, 0.16, 0.10, 0.04, 0.05, 0.08, 0.08, 0.07, 0.08, 0.10])
_CAT_AMOUNT = np.array([1.0, 0.9, 1.2, 4.0, 3.0, 1.8, 1.0, 1.3, 0.5, 1.0])
_CAT_ONLINE_ODDS = np.array([0.3, 0.2, 0.02, 2.5, 2.0, 1.5, 1.5, 0.5, 10.0, 1.0])
# Classic (pre-shift) fraud goes for resellable goods.
_FRAUD_CAT = np.array([0.02, 0.02, 0.02, 0.18, 0.30, 0.14, 0.06, 0.02, 0.20, 0.04])

# Hour-of-day profiles (normalised below): people shop in the day, fraudsters like the night.
_LEGIT_HOURS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 4.5, 5, 5.5, 6.5, 7.5, 7, 6, 6, 6.5, 7.5, 8, 7.5, 6, 4.5, 3, 2]
)
_FRAUD_HOURS = np.array(
    [6, 7, 7, 6.5, 5.5, 4, 2, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 2, 2, 2.5, 3, 4, 5]
)
_DAYTIME_HOURS = np.array([0.0] * 8 + [1.0] * 12 + [0.0] * 4)  # 08:00-19:59, the new pattern
_WEEKDAY_VOLUME = np.array([0.94, 0.95, 0.97, 1.0, 1.1, 1.12, 0.92])  # Mon..Sun, mean 1.0

_COMPROMISED_SHARE = 0.04  # of merchants
_CAMOUFLAGE_SHARE = 0.15  # of fraud that looks like the card holder's normal spending
_SPENDING_SHIFT_SCALE = 1.8
_SPENDING_SHIFT_ONLINE_ODDS = 2.0
_NEW_PATTERN_RATE_FACTOR = 2.0


@dataclass(frozen=True)
class DemoDataResult:
    """What one run wrote: enough for the CLI line and for a DVC/Airflow log."""

    days: int
    transactions: int
    fraud: int
    out_dir: Path
    start_date: dt.date
    shift_day: int | None
    shift_kind: str

    def summary(self) -> str:
        end = self.start_date + dt.timedelta(days=self.days - 1)
        share = self.fraud / self.transactions if self.transactions else 0.0
        shift = (
            "no shift"
            if self.shift_day is None
            else f"shift '{self.shift_kind}' from day {self.shift_day} "
            f"({self.start_date + dt.timedelta(days=self.shift_day)})"
        )
        return (
            f"{self.days} daily batches {self.start_date}..{end}: {self.transactions} transactions, "
            f"{self.fraud} fraudulent ({share:.2%}), {shift}; written to {self.out_dir}"
        )


SPEND_DAYS = 7  # the spend label's horizon


def generate(params: DemoParams | dict[str, Any], out_dir: Path) -> DemoDataResult:
    """Write the demo transactions and delayed labels under out_dir; same params, same bytes."""
    if not isinstance(params, DemoParams):
        try:
            params = DemoParams.model_validate(params or {})
        except ValidationError as exc:
            fields = "; ".join(f"field 'demo.{'.'.join(map(str, e['loc']))}': {e['msg']}"
                               for e in exc.errors())
            raise GlueError(f"params.yaml {fields}") from None
    start, shift_day = _check(params)
    out_dir = Path(out_dir)
    tx_dir, label_dir, spend_dir = out_dir / "transactions", out_dir / "labels", out_dir / "spend_labels"
    for folder in (tx_dir, label_dir, spend_dir):
        folder.mkdir(parents=True, exist_ok=True)
    spend = np.zeros((params.customers, params.days))  # legitimate spending per card holder and day
    paid = np.zeros((params.customers, params.days), dtype=bool)

    rng = np.random.default_rng(params.seed)
    world = _World.build(rng, params)
    weekdays = (start.weekday() + np.arange(params.days)) % 7
    counts = rng.poisson(params.transactions_per_day * _WEEKDAY_VOLUME[weekdays])
    counts = np.maximum(counts, 1)
    id_width = max(8, len(str(int(counts.sum()))))

    written: set[str] = set()
    next_id, total_fraud = 1, 0
    for day in range(params.days):
        shifted = shift_day is not None and day >= shift_day
        kind = params.shift_kind if shifted else "none"
        batch = _day_batch(rng, world, params, int(counts[day]), kind)
        date = start + dt.timedelta(days=day)
        tx, labels = _tables(rng, batch, date, next_id, id_width, params.label_delay_days)
        name = f"{date.isoformat()}.parquet"
        _write(tx, tx_dir / name)
        _write(labels, label_dir / name)
        written.add(name)
        next_id += len(batch.ms)
        total_fraud += int(batch.fraud.sum())
        np.add.at(spend[:, day], batch.customer[~batch.fraud], batch.amount[~batch.fraud])
        paid[batch.customer[~batch.fraud], day] = True

    spend_written = _write_spend_labels(spend, paid, start, spend_dir)
    for folder in (tx_dir, label_dir):
        _remove_stale(folder, written)
    _remove_stale(spend_dir, spend_written)

    return DemoDataResult(
        days=params.days,
        transactions=next_id - 1,
        fraud=total_fraud,
        out_dir=out_dir,
        start_date=start,
        shift_day=shift_day,
        shift_kind=params.shift_kind if shift_day is not None else "none",
    )


def _check(params: DemoParams) -> tuple[dt.date, int | None]:
    """Reject parameters that cannot make a sensible data set, naming the params.yaml field."""

    def bad(field: str, rule: str) -> GlueError:
        return GlueError(f"params.yaml field 'demo.{field}': {rule}")

    try:
        start = dt.date.fromisoformat(params.start_date)
    except ValueError:
        raise bad("start_date", f"'{params.start_date}' is not an ISO date (YYYY-MM-DD)") from None
    if params.days < 1:
        raise bad("days", f"must be at least 1, got {params.days}")
    if params.transactions_per_day < 1:
        raise bad("transactions_per_day", f"must be at least 1, got {params.transactions_per_day}")
    if params.customers < 1:
        raise bad("customers", f"must be at least 1, got {params.customers}")
    if params.merchants < len(CATEGORIES):
        raise bad(
            "merchants", f"must be at least {len(CATEGORIES)} (one per category), got {params.merchants}"
        )
    if not 0.0 <= params.fraud_rate <= 0.5:
        raise bad("fraud_rate", f"must be between 0 and 0.5, got {params.fraud_rate}")
    if params.label_delay_days < 0:
        raise bad("label_delay_days", f"must be 0 or more, got {params.label_delay_days}")
    if params.shift_kind not in SHIFT_KINDS:
        raise bad("shift_kind", f"must be one of {', '.join(SHIFT_KINDS)}, got '{params.shift_kind}'")
    if params.shift_kind == "none":
        return start, None
    if params.shift_day is None:
        raise bad("shift_day", f"shift_kind is '{params.shift_kind}' but shift_day is null")
    if not 0 <= params.shift_day < params.days:
        raise bad("shift_day", f"must be a day index in [0, {params.days}) (demo.days), "
                  f"got {params.shift_day}")
    return start, params.shift_day


@dataclass(frozen=True)
class _World:
    """Customers and merchants: fixed for the whole run, drawn first from the seed."""

    activity: np.ndarray  # probability that a transaction belongs to each customer
    home_amount: np.ndarray  # typical amount per customer
    online_logit: np.ndarray  # habit of buying online
    atm_share: np.ndarray
    cat_cdf: np.ndarray  # (customers, categories) cumulative category preference
    merchant_cat: np.ndarray
    by_cat: list[np.ndarray]  # merchant ids of each category
    compromised: np.ndarray  # merchant ids with leaked card data / high fraud risk

    @classmethod
    def build(cls, rng: np.random.Generator, params: DemoParams) -> _World:
        n_c, n_m = params.customers, params.merchants
        activity = rng.gamma(2.0, 1.0, n_c)
        home_amount = np.exp(rng.normal(3.4, 0.6, n_c))
        online_share = rng.beta(2.0, 6.0, n_c)
        atm_share = rng.beta(1.0, 18.0, n_c)
        prefs = rng.dirichlet(_CAT_POPULARITY * 4.0, n_c)
        n_cat = len(CATEGORIES)
        merchant_cat = np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_m - n_cat, p=_CAT_POPULARITY)])
        n_comp = max(1, round(n_m * _COMPROMISED_SHARE))
        compromised = np.sort(rng.choice(n_m, n_comp, replace=False))
        return cls(
            activity=activity / activity.sum(),
            home_amount=home_amount,
            online_logit=np.log(online_share / (1.0 - online_share)),
            atm_share=atm_share,
            cat_cdf=np.cumsum(prefs, axis=1),
            merchant_cat=merchant_cat,
            by_cat=[np.flatnonzero(merchant_cat == c) for c in range(len(CATEGORIES))],
            compromised=compromised,
        )

    def merchant_in(self, rng: np.random.Generator, cat: np.ndarray) -> np.ndarray:
        """A uniformly chosen merchant of each row's category."""
        out = np.empty(len(cat), dtype=np.int64)
        u = rng.random(len(cat))
        for c, ids in enumerate(self.by_cat):
            rows = cat == c
            out[rows] = ids[(u[rows] * len(ids)).astype(np.int64)]
        return out


@dataclass(frozen=True)
class _Batch:
    """One day's rows, unsorted; times in milliseconds since midnight UTC."""

    ms: np.ndarray
    customer: np.ndarray
    merchant: np.ndarray
    category: np.ndarray
    channel: np.ndarray
    amount: np.ndarray
    card_present: np.ndarray
    fraud: np.ndarray

    @staticmethod
    def concat(*parts: _Batch) -> _Batch:
        return _Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Batch.__dataclass_fields__))


def _day_batch(rng: np.random.Generator, world: _World, params: DemoParams, n: int, kind: str) -> _Batch:
    """Legitimate spending plus fraud bursts for one day, under the shift in force that day."""
    rate = params.fraud_rate * (_NEW_PATTERN_RATE_FACTOR if kind == "new_fraud_pattern" else 1.0)
    n_fraud = int(rng.binomial(n, min(rate, 1.0)))
    n_camo = int(rng.binomial(n_fraud, _CAMOUFLAGE_SHARE))
    n_legit_looking = n - n_fraud + n_camo
    legit = _legit(rng, world, n_legit_looking, kind)
    flags = np.zeros(n_legit_looking, dtype=bool)
    flags[n - n_fraud :] = True  # the last n_camo legit-looking rows are camouflaged fraud
    legit = _Batch(**{**legit.__dict__, "fraud": flags})
    pattern = _new_pattern_fraud if kind == "new_fraud_pattern" else _classic_fraud
    bursts = pattern(rng, world, n_fraud - n_camo, kind)
    return _Batch.concat(legit, bursts)


def _legit(rng: np.random.Generator, world: _World, n: int, kind: str) -> _Batch:
    """Card holders spending as they usually do (more, and more online, after a spending shift)."""
    spending = kind == "spending_change"
    cust = rng.choice(len(world.activity), n, p=world.activity)
    cat = (rng.random(n)[:, None] > world.cat_cdf[cust]).sum(axis=1)
    cat = np.minimum(cat, len(CATEGORIES) - 1)
    atm = rng.random(n) < world.atm_share[cust]
    logit = world.online_logit[cust] + np.log(_CAT_ONLINE_ODDS[cat])
    if spending:
        logit = logit + np.log(_SPENDING_SHIFT_ONLINE_ODDS)
    online = ~atm & (rng.random(n) < 1.0 / (1.0 + np.exp(-logit)))
    channel = np.where(atm, _ATM, np.where(online, _ONLINE, _IN_STORE))
    cat = np.where(atm, _CAT["other"], cat)
    merchant = world.merchant_in(rng, cat)
    scale = _SPENDING_SHIFT_SCALE if spending else 1.0
    amount = world.home_amount[cust] * _CAT_AMOUNT[cat] * rng.lognormal(0.0, 0.45, n) * scale
    hour = rng.choice(24, n, p=_LEGIT_HOURS / _LEGIT_HOURS.sum())
    ms = hour * 3_600_000 + rng.integers(0, 3_600_000, n)
    card_present = (channel != _ONLINE) & ~((channel == _IN_STORE) & (rng.random(n) < 0.03))
    return _Batch(ms, cust, merchant, cat, channel, _money(amount, channel), card_present,
                  np.zeros(n, dtype=bool))


def _classic_fraud(rng: np.random.Generator, world: _World, n: int, kind: str) -> _Batch:
    """Stolen card data: bursts of large, mostly online purchases, often at night."""
    cust, ms = _bursts(rng, world, n, _FRAUD_HOURS)
    channel = rng.choice(3, n, p=[0.75, 0.15, 0.10])
    at_compromised = (channel != _ATM) & (rng.random(n) < 0.5)
    cat = np.where(channel == _ATM, _CAT["other"], rng.choice(len(CATEGORIES), n, p=_FRAUD_CAT))
    merchant = world.merchant_in(rng, cat)
    merchant = np.where(at_compromised, rng.choice(world.compromised, n), merchant)
    cat = world.merchant_cat[merchant]
    scale = _SPENDING_SHIFT_SCALE if kind == "spending_change" else 1.0
    amount = world.home_amount[cust] * rng.lognormal(1.4, 0.5, n) * scale
    card_present = (channel == _ATM) | ((channel == _IN_STORE) & (rng.random(n) < 0.5))
    return _Batch(ms, cust, merchant, cat, channel, _money(amount, channel), card_present,
                  np.ones(n, dtype=bool))


def _new_pattern_fraud(rng: np.random.Generator, world: _World, n: int, kind: str) -> _Batch:
    """Cloned cards: bursts of small in-store, card-present purchases at grocery/fuel by day."""
    cust, ms = _bursts(rng, world, n, _DAYTIME_HOURS)
    cat = np.where(rng.random(n) < 0.6, _CAT["grocery"], _CAT["fuel"])
    merchant = world.merchant_in(rng, cat)
    amount = world.home_amount[cust] * rng.lognormal(-0.4, 0.35, n)
    channel = np.full(n, _IN_STORE)
    return _Batch(ms, cust, merchant, cat, channel, _money(amount, channel), np.ones(n, dtype=bool),
                  np.ones(n, dtype=bool))


def _bursts(
    rng: np.random.Generator, world: _World, n: int, hours: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split n fraud rows into bursts on one card each, minutes apart: (customer, ms) per row."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sizes = 1 + rng.poisson(1.8, n)
    ends = np.cumsum(sizes)
    n_bursts = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:n_bursts]
    sizes[-1] -= int(ends[n_bursts - 1]) - n
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    burst_cust = rng.choice(len(world.activity), n_bursts, p=world.activity)
    hour = rng.choice(24, n_bursts, p=hours / hours.sum())
    burst_ms = hour * 3_600_000 + rng.integers(0, 3_600_000, n_bursts)
    gaps = rng.exponential(240_000.0, n)  # ~4 minutes between purchases on a stolen card
    gaps[starts] = 0.0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts], sizes)
    ms = np.minimum(np.repeat(burst_ms, sizes) + within.astype(np.int64), _DAY_MS - 1)
    return np.repeat(burst_cust, sizes), ms


def _money(amount: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Cents, within the schema's bounds; ATM withdrawals in multiples of 20."""
    atm = np.maximum(20.0, np.round(amount / 20.0) * 20.0)
    out = np.where(channel == _ATM, atm, np.round(amount, 2))
    return np.clip(out, 1.0, _MAX_AMOUNT)


def _tables(
    rng: np.random.Generator, batch: _Batch, date: dt.date, first_id: int, width: int, delay_days: int
) -> tuple[pa.Table, pa.Table]:
    """Sort one day by time, number the rows globally, and build the transaction and label tables."""
    import pyarrow as pa

    order = np.argsort(batch.ms, kind="stable")
    n = len(order)
    ids = np.char.add("t", np.char.zfill(np.arange(first_id, first_id + n).astype(str), width))
    day_ns = np.datetime64(date.isoformat(), "ns").astype(np.int64)
    event_ns = day_ns + batch.ms[order].astype(np.int64) * _MS_NS
    jitter = rng.integers(0, _LABEL_JITTER_MS, n) * _MS_NS
    label_ns = event_ns + delay_days * _DAY_MS * _MS_NS + jitter
    ts = pa.timestamp("ns", tz="UTC")
    names = np.array(CATEGORIES, dtype=object)
    channels = np.array(CHANNELS, dtype=object)
    tx = pa.table(
        {
            "transaction_id": pa.array(ids.tolist(), pa.string()),
            "event_timestamp": pa.array(event_ns, ts),
            "customer_id": pa.array(batch.customer[order].astype(np.int64), pa.int64()),
            "merchant_id": pa.array(batch.merchant[order].astype(np.int64), pa.int64()),
            "amount": pa.array(batch.amount[order].astype(np.float64), pa.float64()),
            "channel": pa.array(channels[batch.channel[order]].tolist(), pa.string()),
            "merchant_category": pa.array(names[batch.category[order]].tolist(), pa.string()),
            "card_present": pa.array(batch.card_present[order].astype(bool), pa.bool_()),
        }
    )
    labels = pa.table(
        {
            "transaction_id": tx.column("transaction_id"),
            "event_timestamp": tx.column("event_timestamp"),
            "label_timestamp": pa.array(label_ns, ts),
            "is_fraud": pa.array(batch.fraud[order].astype(np.int64), pa.int64()),
        }
    )
    return tx, labels


def _write_spend_labels(spend: np.ndarray, paid: np.ndarray, start: dt.date, out: Path) -> set[str]:
    """The customer-spend model's labels: for each day D and each card holder who paid on D-1, the
    legitimate spending of days D .. D+6, known at D + 7 days (00:00 UTC)."""
    import pyarrow as pa

    written: set[str] = set()
    ts = pa.timestamp("ns", tz="UTC")
    cumulative = np.concatenate([np.zeros((spend.shape[0], 1)), np.cumsum(spend, axis=1)], axis=1)
    for day in range(1, spend.shape[1] - SPEND_DAYS + 1):
        who = np.nonzero(paid[:, day - 1])[0]
        date = start + dt.timedelta(days=day)
        day_ns = np.datetime64(date.isoformat(), "ns").astype(np.int64)
        table = pa.table({
            "customer_id": pa.array(who.astype(np.int64), pa.int64()),
            "event_timestamp": pa.array(np.full(len(who), day_ns), ts),
            "label_timestamp": pa.array(np.full(len(who), day_ns + SPEND_DAYS * _DAY_MS * _MS_NS), ts),
            "spend_next_7d": pa.array(np.round(cumulative[who, day + SPEND_DAYS] - cumulative[who, day], 2),
                                      pa.float64()),
        })
        name = f"{date.isoformat()}.parquet"
        _write(table, out / name)
        written.add(name)
    return written


def _write(table: pa.Table, path: Path) -> None:
    """Write atomically (a crash never leaves half a batch) and without run-dependent metadata."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Drop day files an earlier run wrote and this one did not; leave every other file alone."""
    for path in folder.iterdir():
        if path.is_file() and _DAY_FILE.match(path.name) and path.name not in keep:
            path.unlink()

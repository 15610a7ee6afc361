"""A corpus of broken raw batches, each breaking one rule of the raw schema in params.yaml.

Every entry is (kind, file name, what the gate's message must mention). The corpus is written from
one good batch so each file differs from an accepted batch in exactly one way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

DAY = "2026-01-05"


def _with(df: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> pd.DataFrame:
    out = df.copy()
    result = change(out)
    return out if result is None else result


def _write_parquet(df: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: df.to_parquet(path, index=False)


def build_corpus(good: pd.DataFrame, folder: Path) -> list[tuple[str, Path, list[str]]]:
    """Write the broken batches into folder; returns (kind, path, words the rejection must name)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = f"{DAY}.parquet"
    ts = good["event_timestamp"]
    cases: list[tuple[str, str, Callable[[Path], None], list[str]]] = [
        (
            "missing_column",
            p,
            _write_parquet(good.drop(columns=["merchant_id"])),
            ["expect_table_columns_to_match_set", "missing columns ['merchant_id']"],
        ),
        (
            "wrong_dtype",
            p,
            _write_parquet(_with(good, lambda d: d.assign(amount=d["amount"].astype(str)))),
            ["column 'amount'", "expect_column_values_to_be_in_type_list"],
        ),
        (
            "nulls",
            p,
            _write_parquet(
                _with(
                    good, lambda d: d.assign(customer_id=d["customer_id"].astype("Int64").mask(d.index < 5))
                )
            ),
            ["column 'customer_id'", "expect_column_values_to_not_be_null", "5 of"],
        ),
        (
            "negative_amounts",
            p,
            _write_parquet(_with(good, lambda d: d.assign(amount=d["amount"].where(d.index >= 3, -12.5)))),
            ["column 'amount'", "expect_column_values_to_be_between", "-12.5"],
        ),
        (
            "unknown_category",
            p,
            _write_parquet(
                _with(
                    good,
                    lambda d: d.assign(
                        merchant_category=d["merchant_category"].where(d.index != 0, "casino")
                    ),
                )
            ),
            ["column 'merchant_category'", "expect_column_values_to_be_in_set", "casino"],
        ),
        (
            "duplicate_ids",
            p,
            _write_parquet(
                _with(
                    good,
                    lambda d: d.assign(
                        transaction_id=d["transaction_id"].where(d.index != 1, d["transaction_id"].iloc[0])
                    ),
                )
            ),
            ["column 'transaction_id'", "expect_column_values_to_be_unique"],
        ),
        (
            "future_timestamps",
            "2099-01-01.parquet",
            _write_parquet(
                _with(
                    good,
                    lambda d: d.assign(
                        event_timestamp=ts - ts.dt.normalize() + pd.Timestamp("2099-01-01", tz="UTC")
                    ),
                )
            ),
            ["column 'event_timestamp'", "expect_column_max_to_be_between", "not in the future"],
        ),
        (
            "wrong_day",
            p,
            _write_parquet(_with(good, lambda d: d.assign(event_timestamp=ts + pd.Timedelta(days=1)))),
            ["column 'event_timestamp'", "inside the batch's day"],
        ),
        ("empty_file", p, lambda path: path.write_bytes(b""), ["empty"]),
        (
            "truncated_parquet",
            p,
            lambda path: path.write_bytes(_parquet_bytes(good)[:500]),
            ["cannot be read as parquet"],
        ),
        (
            "non_utf8_csv",
            f"{DAY}.csv",
            lambda path: path.write_bytes(
                good.head(200).assign(merchant_category="caf\u00e9").to_csv(index=False).encode("latin-1")
            ),
            ["not UTF-8"],
        ),
        (
            "extra_column",
            p,
            _write_parquet(good.assign(ssn="000-00-0000")),
            ["expect_table_columns_to_match_set", "unexpected columns ['ssn']"],
        ),
        ("too_few_rows", p, _write_parquet(good.head(10)), ["expect_table_row_count_to_be_between"]),
        ("bad_file_name", "latest.parquet", _write_parquet(good), ["YYYY-MM-DD"]),
    ]
    out = []
    for kind, name, write, words in cases:
        path = folder / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        out.append((kind, path, words))
    return out


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()

"""Pure pieces of the validation gate: batch naming, the suite derived from params, messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from glue.adapters import great_expectations
from glue.settings import ColumnRule, ValidationParams
from glue.validation import BatchValidation, _batch_day, read_batch

RULES = ValidationParams(
    min_rows=1,
    columns={
        "id": ColumnRule(dtype="string", unique=True),
        "event_timestamp": ColumnRule(dtype="datetime"),
        "amount": ColumnRule(dtype="float", min=0.0),
        "kind": ColumnRule(dtype="string", allowed=["a", "b"], nullable=True),
    },
)


def test_batch_day_comes_from_the_file_name() -> None:
    assert _batch_day(Path("x/2026-02-28.parquet")) == datetime(2026, 2, 28, tzinfo=UTC)
    assert _batch_day(Path("2026-02-30.csv")).expectation == "batch_file_name"
    assert _batch_day(Path("today.parquet")).expectation == "batch_file_name"


def test_suite_follows_the_rules() -> None:
    configs = great_expectations.expectation_configs(RULES)
    kinds = [(type(e).__name__, getattr(e, "column", None)) for e in configs]
    assert ("ExpectColumnValuesToBeUniqueExpectation", "id") not in kinds  # names are GE's own
    names = {name for name, _ in kinds}
    assert {
        "ExpectTableRowCountToBeBetween",
        "ExpectTableColumnsToMatchSet",
        "ExpectColumnValuesToBeUnique",
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnMaxToBeBetween",
    } <= names
    not_null = {col for name, col in kinds if name == "ExpectColumnValuesToNotBeNull"}
    assert not_null == {"id", "event_timestamp", "amount"}  # "kind" is nullable


def test_suite_parameters_bound_the_day_and_the_future() -> None:
    params = great_expectations.suite_parameters(
        RULES, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 5, 12, tzinfo=UTC)
    )
    assert params["day_start"] == datetime(2026, 1, 5)
    assert params["day_end"] == datetime(2026, 1, 6)
    assert params["latest_allowed"] == datetime(2026, 1, 5, 12, 5)


def test_failure_message_names_file_column_and_expectation() -> None:
    verdict = BatchValidation(
        path=Path("data/raw/2026-01-05.parquet"),
        success=False,
        rows=3,
        failures=[
            great_expectations.ExpectationOutcome(
                "amount", "expect_column_values_to_be_between", "failed: 1 of 3 rows"
            ),
        ],
    )
    assert (
        "data/raw/2026-01-05.parquet: column 'amount': expect_column_values_to_be_between failed: 1 of 3 rows"
        in verdict.summary()
    )


def test_csv_timestamps_are_parsed_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "2026-01-05.csv"
    pd.DataFrame({"event_timestamp": ["2026-01-05T10:00:00Z"], "amount": [1.0]}).to_csv(path, index=False)
    df = read_batch(path, RULES)
    assert str(df["event_timestamp"].dtype) == "datetime64[ns, UTC]"


def test_tz_aware_columns_reach_ge_as_naive_utc() -> None:
    df = pd.DataFrame({"t": pd.to_datetime(["2026-01-05T10:00:00+02:00"], utc=True)})
    assert str(great_expectations._for_ge(df)["t"].dtype) == "datetime64[ns]"
    assert great_expectations._for_ge(df)["t"].iloc[0] == pd.Timestamp("2026-01-05T08:00:00")

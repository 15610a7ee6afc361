"""The Great Expectations adapter: builds the raw-batch suite from params.yaml and runs it.

This is the only glue module that imports great_expectations (GE 1.x, fluent API). The suite is
derived from `ValidationParams` so a team describes its own columns in params.yaml and never
writes GE code; the checks themselves — and their rendering as data docs — are GE's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from glue.settings import ColumnRule, ValidationParams

SUITE_NAME = "raw_batches"

# Pandas dtype names GE's type check accepts for each logical dtype of params.yaml. Object columns
# are checked value by value, so "str" and "bool" also cover CSV-read and nullable columns.
DTYPE_NAMES: dict[str, list[str]] = {
    "string": ["str", "StringDtype"],
    "int": ["int64", "int32", "int16", "int8", "Int64", "Int32"],
    "float": ["float64", "float32", "Float64", "int64", "int32", "Int64"],
    "bool": ["bool", "BooleanDtype"],
    "datetime": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}


@dataclass(frozen=True)
class ExpectationOutcome:
    """One failed expectation, in words a person can act on."""

    column: str | None
    expectation: str
    detail: str


def expectation_configs(rules: ValidationParams) -> list[Any]:
    """The GE expectations of the raw schema.

    The batch's day and the current time are suite parameters ($PARAMETER), resolved per run, so
    one suite serves every batch and is built once per process.
    """
    import great_expectations as gx

    ge = gx.expectations
    out: list[Any] = [
        ge.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        ge.ExpectTableColumnsToMatchSet(
            column_set=list(rules.columns), exact_match=not rules.allow_extra_columns
        ),
    ]
    for name, rule in rules.columns.items():
        out.extend(_column_expectations(ge, name, rule))
    ts = rules.timestamp_column
    out.append(
        ge.ExpectColumnValuesToBeBetween(
            column=ts, min_value={"$PARAMETER": "day_start"}, max_value={"$PARAMETER": "day_end"},
            strict_max=True, meta={"rule": "inside the batch's day, UTC"},
        )
    )
    out.append(
        ge.ExpectColumnMaxToBeBetween(
            column=ts, max_value={"$PARAMETER": "latest_allowed"},
            meta={"rule": f"not in the future (tolerance {rules.max_future_seconds} s)"},
        )
    )
    return out


def suite_parameters(rules: ValidationParams, day_start: datetime, now: datetime) -> dict[str, datetime]:
    """Values of the suite's $PARAMETERs for one batch (naive UTC, as GE sees timestamps)."""
    start = _naive_utc(day_start)
    return {
        "day_start": start,
        "day_end": start + timedelta(days=1),
        "latest_allowed": _naive_utc(now) + timedelta(seconds=rules.max_future_seconds),
    }


def run_suite(df: pd.DataFrame, rules: ValidationParams, day_start: datetime, now: datetime) -> dict:
    """Validate one DataFrame; returns GE's validation result as a JSON-able dict."""
    definition = _prepared(rules.model_dump_json())
    result = definition.run(
        batch_parameters={"dataframe": _for_ge(df)},
        expectation_parameters=suite_parameters(rules, day_start, now),
        result_format="SUMMARY",
    )
    return result.to_json_dict()


def stable_result(result: dict, rules: ValidationParams, now: datetime) -> dict:
    """GE's result without what changes from run to run on the same data and rules, for the file
    DVC hashes (data/validated/results): the same batch under the same rules gives the same bytes.

    Dropped: the validation and load times, GE's generated ids (the validation definition's and
    each expectation's, new in every process). The "not in the future" bound is computed from the
    validation time; it is written as the rule ("validation time + N s") instead of its value.
    GE's own fingerprint of the data (meta.batch_markers.pandas_data_fingerprint) stays.
    """
    latest = _naive_utc(now) + timedelta(seconds=rules.max_future_seconds)  # as suite_parameters has it
    rule = f"validation time + {rules.max_future_seconds} s"

    def rule_for(value: Any) -> Any:
        return rule if value in (latest, latest.isoformat()) else value

    items = []
    for item in result.get("results", []):
        config = item.get("expectation_config", {})
        kwargs = {k: rule_for(v) for k, v in config.get("kwargs", {}).items()}
        items.append({**item, "expectation_config": {k: v for k, v in {**config, "kwargs": kwargs}.items()
                                                     if k != "id"}})
    meta = result.get("meta", {})
    return {
        "success": result.get("success"),
        "suite_name": result.get("suite_name"),
        "suite_parameters": {k: rule_for(v) for k, v in result.get("suite_parameters", {}).items()},
        "latest_allowed": rule,
        "statistics": result.get("statistics"),
        "results": items,
        "meta": {"great_expectations_version": meta.get("great_expectations_version"),
                 "pandas_data_fingerprint": meta.get("batch_markers", {}).get("pandas_data_fingerprint")},
    }


def outcomes(result: dict) -> list[ExpectationOutcome]:
    """The failed expectations of a GE result, each with its column and a few unexpected values."""
    failed = []
    missing = _missing_columns(result)
    for item in result.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config", {})
        kwargs = config.get("kwargs", {})
        if kwargs.get("column") in missing:
            continue  # already reported once, as a missing column of the table
        failed.append(
            ExpectationOutcome(
                column=kwargs.get("column"),
                expectation=config.get("type", "?"),
                detail=_describe(config.get("type", ""), kwargs, item.get("result", {}),
                                 item.get("exception_info", {}), config.get("meta") or {}),
            )
        )
    return failed


def build_data_docs(df: pd.DataFrame, rules: ValidationParams, day_start: datetime, now: datetime,
                    out_dir: Path) -> Path:
    """Render GE's HTML data docs for one batch into out_dir; returns the index.html path.

    Data docs need a file-backed context, so one is made in a temporary directory and its
    rendered site copied out. Only rejected batches pay for this.
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    with tempfile.TemporaryDirectory(prefix="glue-gx-") as tmp:
        context = gx.get_context(mode="file", project_root_dir=tmp)
        _quiet(context)
        source = context.data_sources.add_pandas("batches")
        batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(
            gx.ExpectationSuite(name=SUITE_NAME, expectations=expectation_configs(rules))
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{SUITE_NAME}_validation", data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(name="quarantine", validation_definitions=[definition],
                          actions=[UpdateDataDocsAction(name="data_docs")], result_format="COMPLETE")
        )
        checkpoint.run(batch_parameters={"dataframe": _for_ge(df)},
                       expectation_parameters=suite_parameters(rules, day_start, now))
        site = Path(tmp) / "gx" / "uncommitted" / "data_docs" / "local_site"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(site, out_dir)
    return out_dir / "index.html"


# --- internals ------------------------------------------------------------------------------


def _for_ge(df: pd.DataFrame) -> pd.DataFrame:
    """Timezone-aware columns as naive UTC: GE's pandas type check cannot name a tz-aware dtype."""
    aware = [c for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return df
    out = df.copy()
    for column in aware:
        out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _missing_columns(result: dict) -> set[str]:
    for item in result.get("results", []):
        config = item.get("expectation_config", {})
        if config.get("type") == "expect_table_columns_to_match_set" and not item.get("success"):
            observed = set(item.get("result", {}).get("observed_value") or [])
            return set(config.get("kwargs", {}).get("column_set", [])) - observed
    return set()


def _column_expectations(ge: Any, name: str, rule: ColumnRule) -> list[Any]:
    out = [ge.ExpectColumnValuesToBeInTypeList(column=name, type_list=DTYPE_NAMES[rule.dtype])]
    if not rule.nullable:
        out.append(ge.ExpectColumnValuesToNotBeNull(column=name))
    if rule.unique:
        out.append(ge.ExpectColumnValuesToBeUnique(column=name))
    if rule.min is not None or rule.max is not None:
        out.append(ge.ExpectColumnValuesToBeBetween(column=name, min_value=rule.min, max_value=rule.max))
    if rule.allowed is not None:
        out.append(ge.ExpectColumnValuesToBeInSet(column=name, value_set=rule.allowed))
    return out


@lru_cache(maxsize=4)
def _prepared(rules_json: str) -> Any:
    """One ephemeral GE context, suite and validation definition per rule set, reused for every batch."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    rules = ValidationParams.model_validate_json(rules_json)
    context = gx.get_context(mode="ephemeral")
    _quiet(context)
    source = context.data_sources.add_pandas("batches")
    batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=expectation_configs(rules)))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{SUITE_NAME}_validation", data=batch_definition, suite=suite)
    )


def _quiet(context: Any) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)


def _describe(kind: str, kwargs: dict, result: dict, exception: dict, meta: dict) -> str:
    if exception.get("raised_exception"):
        return f"could not be evaluated: {exception.get('exception_message')}"
    bounds = ", ".join(
        f"{k.removesuffix('_value')} {kwargs[k]}"
        for k in ("min_value", "max_value")
        if kwargs.get(k) is not None
    )
    rule = meta.get("rule") or bounds
    if kind == "expect_table_columns_to_match_set":
        expected, observed = set(kwargs.get("column_set", [])), set(result.get("observed_value") or [])
        parts = []
        if expected - observed:
            parts.append(f"missing columns {sorted(expected - observed)}")
        if observed - expected:
            parts.append(f"unexpected columns {sorted(observed - expected)}")
        return "; ".join(parts) or "columns differ"
    if kind == "expect_column_values_to_be_in_type_list":
        observed = result.get("observed_value")
        examples = result.get("partial_unexpected_list")
        got = f"got dtype {observed}" if observed else f"values of other types, e.g. {examples[:3]}"
        return f"expected one of {kwargs.get('type_list')}, {got}"
    if "observed_value" in result and result.get("unexpected_count") is None:
        return f"({rule}) observed {result['observed_value']}"
    count, total = result.get("unexpected_count"), result.get("element_count")
    examples = (result.get("partial_unexpected_list") or [])[:3]
    shown = f" ({rule})" if rule else ""
    if kind == "expect_column_values_to_be_in_set":
        shown = f" (allowed {kwargs.get('value_set')})"
    return f"{shown.strip()} failed: {count} of {total} rows, e.g. {examples}".strip()

"""The Evidently adapter: drift and model-quality reports, saved as HTML and JSON.

Composes Evidently 0.7's own presets (``DataDriftPreset``, ``ClassificationPreset``,
``RegressionPreset``) and the
``ValueDrift`` metric for the model's scores; nothing is subclassed. The per-column verdicts come
from the reports' own tests (a failed ``Value Drift for column X`` test is a drifted column), so
what the decision sees is exactly what the HTML report shows.

Sampling: each side of a drift comparison is cut to ``max_rows`` uniformly sampled rows (seeded).
The default methods are distances between distributions (normed Wasserstein for numbers,
Jensen-Shannon for categories); their sampling error shrinks like 1/sqrt(n) — about 0.005 at
100k rows against a threshold of 0.1 — so the verdict on a sample is the verdict on all rows
(``benchmarks/monitoring.py`` checks it at 1M rows). A p-value test (``ks``, ``chisquare``) grows
more sensitive with n, and a sample makes it *less* trigger-happy, not wrong.

Small windows: each distance test's threshold is raised to the noise the reference's own days
show at the current window's size (monitoring/policy.py explains the rule; ``reference_noise``
measures it with Evidently's own test functions, the ones the report's tests run). The thresholds
used go into the report, so its HTML shows what each score was held to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.policy import (
    ColumnNoise,
    DriftFinding,
    DriftPolicy,
    drift_finding,
    drift_thresholds,
    size_term,
)

if TYPE_CHECKING:
    import pandas as pd

DRIFT_HTML = "drift.html"
DRIFT_JSON = "drift.json"
QUALITY_HTML = "quality.html"
QUALITY_JSON = "quality.json"
_SAMPLE_SEED = 0


@dataclass(frozen=True)
class SavedReport:
    """An Evidently report on disk, with what glue read out of it."""

    html: Path
    json: Path
    rows: tuple[int, int]  # (reference, current) rows the report ran on, after sampling


def categorical_columns(reference: pd.DataFrame, columns: list[str], max_categories: int) -> list[str]:
    """Columns to compare as categories: non-numeric, boolean, or with few distinct values."""
    import pandas as pd

    found = []
    for col in columns:
        series = reference[col]
        if (not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
                or series.nunique(dropna=True) <= max_categories):
            found.append(col)
    return found


def sample(df: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most max_rows rows, uniformly and reproducibly."""
    if len(df) <= max_rows:
        return df
    return df.sample(n=max_rows, random_state=_SAMPLE_SEED)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    policy: DriftPolicy,
    out_dir: Path,
    prediction: str | None = None,
    time_column: str | None = None,
    noise: dict[str, ColumnNoise] | None = None,
) -> tuple[DriftFinding, SavedReport]:
    """Drift of `features` (and of the `prediction` column) from reference to current.

    With the reference's `time_column` (and ``noise_sigmas`` > 0) the thresholds are raised to
    the reference's own day-to-day noise at the current window's size; `noise`, when given, is that
    noise already measured (``reference_noise`` of the same reference and policy).
    """
    import_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    columns = [*features, *([prediction] if prediction else [])]
    ref = sample(reference[columns], policy.max_rows)
    cur = sample(current[columns], policy.max_rows)
    categorical = categorical_columns(ref, features, policy.max_categories)
    numerical = [c for c in columns if c not in categorical]
    if noise is None:
        noise = {}
        if policy.noise_sigmas > 0 and time_column and time_column in reference.columns:
            noise = reference_noise(reference, features, policy, prediction=prediction,
                                    time_column=time_column)
    thresholds = drift_thresholds(policy, features, categorical, noise, len(ref), len(cur), prediction)
    ref, cur = _as_types(ref, categorical), _as_types(cur, categorical)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)

    metrics: list[Any] = [DataDriftPreset(
        columns=features,
        drift_share=policy.drift_share,
        num_method=policy.numerical.method, num_threshold=policy.numerical.threshold,
        cat_method=policy.categorical.method, cat_threshold=policy.categorical.threshold,
        per_column_method={c: t.method for c, t in policy.columns.items() if c in features} or None,
        per_column_threshold={c: thresholds[c] for c in features},
    )]
    if prediction:
        metrics.append(ValueDrift(column=prediction, method=policy.prediction.method,
                                  threshold=thresholds[prediction]))
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    scores, drifted = _column_verdicts(result)
    finding = drift_finding(
        policy,
        drifted=[c for c in drifted if c in features],
        n_columns=len(features),
        scores={c: scores[c] for c in features if c in scores},
        prediction_score=scores.get(prediction) if prediction else None,
        prediction_drifted=bool(prediction) and prediction in drifted,
        thresholds=thresholds,
    )
    saved = _save(snapshot, result, out_dir, DRIFT_HTML, DRIFT_JSON, (len(ref), len(cur)))
    return finding, saved


def reference_noise(reference: pd.DataFrame, features: list[str], policy: DriftPolicy,
                    prediction: str | None = None, time_column: str = "event_timestamp",
                    ) -> dict[str, ColumnNoise]:
    """Each column's quiet-day noise: every day of the reference scored against the rest of it.

    The score is the column's own Evidently test (the function its report test runs, on the same
    cleaned values), divided by the test's size term (monitoring/policy.py); a column gets a
    ColumnNoise from at least three days of ``noise_min_day_rows`` rows. Sampled like the report.
    """
    import numpy as np
    import pandas as pd

    import_evidently()
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    columns = [*features, *([prediction] if prediction else [])]
    ref = sample(reference[[*columns, time_column]], policy.max_rows)
    day = pd.to_datetime(ref[time_column], utc=True).dt.floor("D").to_numpy()
    categorical = categorical_columns(ref, features, policy.max_categories)
    typed = _as_types(ref[columns], categorical)
    days = [d for d, n in zip(*np.unique(day, return_counts=True), strict=True)
            if n >= policy.noise_min_day_rows]
    if len(days) < 3:
        return {}
    out: dict[str, ColumnNoise] = {}
    for column in columns:
        is_cat = column in categorical
        test = policy.prediction if column == prediction else policy.test_for(column, is_cat)
        kind = ColumnType.Categorical if is_cat else ColumnType.Numerical
        values = typed[column]
        finite = values.replace([-np.inf, np.inf], np.nan).notna().to_numpy()
        stattest = get_stattest(values, values, kind, test.method)
        units = []
        for d in days:
            inside = day == d
            one, rest = values[inside & finite], values[~inside & finite]
            if one.empty or rest.empty:
                continue
            score = stattest(rest, one, kind, test.threshold).drift_score
            units.append(float(score) / size_term(test.method, len(rest), len(one)))
        if len(units) >= 3:
            out[column] = ColumnNoise(mean=float(np.mean(units)), sd=float(np.std(units, ddof=1)),
                                      days=len(units))
    return out


def quality_report(
    labelled: pd.DataFrame, target: str, prediction: str, task: str, threshold: float | None,
    out_dir: Path,
) -> SavedReport:
    """Evidently's classification or regression report of the model on rows whose labels arrived.

    `task` is the model's (``binary_classification``: `prediction` is P(positive), cut at
    `threshold`; ``regression``: `prediction` is the predicted value).
    """
    import_evidently()
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    if task == "regression":
        data = labelled[[target, prediction]].astype("float64")
        definition = DataDefinition(numerical_columns=[target, prediction],
                                    regression=[Regression(target=target, prediction=prediction)])
        preset: Any = RegressionPreset()
    else:
        data = labelled[[target, prediction]].astype({target: "int64", prediction: "float64"})
        definition = DataDefinition(
            numerical_columns=[prediction],
            classification=[BinaryClassification(target=target, prediction_probas=prediction)],
        )
        preset = ClassificationPreset(probas_threshold=threshold if threshold is not None else 0.5)
    snapshot = Report([preset]).run(current_data=Dataset.from_pandas(data, data_definition=definition))
    return _save(snapshot, snapshot.dict(), out_dir, QUALITY_HTML, QUALITY_JSON, (0, len(data)))


def import_evidently() -> None:
    """Import Evidently without the deprecation warnings its dependencies print at import time."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import evidently.metrics  # noqa: F401
        import evidently.presets  # noqa: F401


def _as_types(df: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categories as strings (Evidently counts them), numbers as floats."""
    out = df.copy()
    for col in out.columns:
        out[col] = out[col].astype(str) if col in categorical else out[col].astype("float64")
    return out


def _column_verdicts(result: dict[str, Any]) -> tuple[dict[str, float], set[str]]:
    """Drift score per column, and the columns whose Value Drift test failed."""
    scores: dict[str, float] = {}
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    drifted = set()
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and _status(test) == "FAIL":
            drifted.add(params["column"])
    return scores, drifted


def _status(test: dict[str, Any]) -> str:
    status = test.get("status")
    return str(getattr(status, "value", status))


def _save(snapshot: Any, result: dict[str, Any], out_dir: Path, html: str, name: str,
          rows: tuple[int, int]) -> SavedReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / html))
    (out_dir / name).write_text(json.dumps(result, indent=1, default=_plain))
    return SavedReport(html=out_dir / html, json=out_dir / name, rows=rows)


def _plain(value: Any) -> Any:
    """JSON for what Evidently's dict holds besides plain values (enums, numpy scalars)."""
    if hasattr(value, "value"):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    return str(value)

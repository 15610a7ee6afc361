"""glue.scoring: every fast path gives the model's own predict_proba, or is not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from glue import scoring

COLUMNS = tuple(f"f{i}" for i in range(8))


def _data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.5, 1.2, size=(n, len(COLUMNS)))
    y = (x[:, 0] * 0.8 - x[:, 1] + rng.normal(0, 1, n) > 0.5).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    return pd.DataFrame(x, columns=list(COLUMNS)), y


def _pipeline(estimator, *steps) -> Pipeline:
    """The shape glue.training builds: a ColumnTransformer by column name, then the estimator."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), *steps)
    return Pipeline([("preprocess", ColumnTransformer([("numeric", numeric, list(COLUMNS))])),
                     ("model", estimator)])


def _expected(model: Pipeline, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(pd.DataFrame(x, columns=list(COLUMNS)))[:, 1]


@pytest.fixture(scope="module")
def hgb() -> Pipeline:
    x, y = _data(3000)
    return _pipeline(HistGradientBoostingClassifier(max_iter=60, random_state=0)).fit(x, y)


def test_gradient_boosting_uses_the_compiled_trees_and_matches_sklearn(hgb: Pipeline) -> None:
    predict, path = scoring.scorer(hgb, COLUMNS)
    assert path == "compiled"
    x, _ = _data(500, seed=1)
    for rows in (x.values[:1], x.values[:10], x.values[:64], x.values):  # compiled and fallback sizes
        np.testing.assert_allclose(predict(rows), _expected(hgb, rows), rtol=0, atol=1e-12)


def test_missing_values_follow_the_split_learned_for_them() -> None:
    """No imputer: NaNs reach the trees, which send them where training sent missing values."""
    x, y = _data(3000)
    model = Pipeline([("preprocess", ColumnTransformer([("numeric", "passthrough", list(COLUMNS))])),
                      ("model", HistGradientBoostingClassifier(max_iter=40, random_state=0))]).fit(x, y)
    predict, path = scoring.scorer(model, COLUMNS)
    assert path == "compiled"
    rows = np.full((3, len(COLUMNS)), np.nan)
    rows[1, :] = 1.0
    np.testing.assert_allclose(predict(rows), _expected(model, rows), rtol=0, atol=1e-12)


def test_columns_are_taken_by_name_whatever_the_request_order(hgb: Pipeline) -> None:
    reordered = tuple(reversed(COLUMNS))
    predict, _ = scoring.scorer(hgb, reordered)
    x, _ = _data(20, seed=2)
    np.testing.assert_allclose(predict(x[list(reordered)].values), _expected(hgb, x.values), atol=1e-12)


@pytest.mark.parametrize(
    ("estimator", "steps"),
    [(LogisticRegression(max_iter=500), (StandardScaler(),)),
     (RandomForestClassifier(n_estimators=10, random_state=0), ())],
)
def test_other_estimators_run_sklearn_on_numpy(estimator, steps) -> None:
    x, y = _data(800)
    model = _pipeline(estimator, *steps).fit(x, y)
    predict, path = scoring.scorer(model, COLUMNS)
    assert path == "numpy"
    np.testing.assert_allclose(predict(x.values[:50]), _expected(model, x.values[:50]), atol=1e-12)


def test_an_unknown_step_falls_back_to_the_models_own_predict_proba() -> None:
    x, y = _data(800)
    model = _pipeline(HistGradientBoostingClassifier(max_iter=20), FunctionTransformer(np.log1p)).fit(x, y)
    predict, path = scoring.scorer(model, COLUMNS)
    assert path in ("numpy", "DataFrame")  # never "compiled": FunctionTransformer is not compiled
    np.testing.assert_allclose(predict(x.values[:20]), _expected(model, x.values[:20]), atol=1e-12)


def test_a_gradient_boosting_regressor_uses_the_compiled_trees_and_matches_sklearn() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, _ = _data(3000)
    y = np.nan_to_num(x.values[:, 0]) * 40.0 + np.nan_to_num(x.values[:, 1]) * 3.0 + 100.0
    model = _pipeline(HistGradientBoostingRegressor(max_iter=60, random_state=0)).fit(x, y)
    predict, path = scoring.scorer(model, COLUMNS, "regression")
    assert path == "compiled"
    rows, _ = _data(200, seed=2)
    for part in (rows.values[:1], rows.values):  # compiled and fallback sizes
        expected = model.predict(pd.DataFrame(part, columns=list(COLUMNS)))
        np.testing.assert_allclose(predict(part), expected, rtol=1e-10, atol=1e-9)

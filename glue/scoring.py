"""Scoring a fitted glue pipeline on a float matrix, fast enough for one transaction per request.

Why a module of its own: `glue serve` answers single transactions, where scikit-learn's per-call
overhead dominates. The fitted pipeline glue.training builds (a ColumnTransformer picking columns
by name, median imputation, optional scaling, a classifier) wants a DataFrame (~1.5 ms to build and
dispatch), and HistGradientBoostingClassifier walks its trees one Cython call per tree (~5 us each,
~1 ms for 200 trees). Here the same fitted numbers (imputer statistics, scaler moments, every
node of every tree) are applied with a handful of numpy operations instead.

Nothing here is trusted blindly: :func:`scorer` uses a fast path only if it gives the same scores
as the model's own ``predict_proba`` on a probe matrix (with NaNs, zeros and a wide range of
values), and falls back to the DataFrame path otherwise. An unknown pipeline shape is always
scored the slow, correct way.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]  # rows x columns float64 -> P(positive class) or the value

BINARY = "binary_classification"  # the tasks of glue.settings.Task (not imported: it loads pydantic)
REGRESSION = "regression"

# Above this many rows scikit-learn's own tree walk (one pass per tree over all rows) is as fast
# as the vectorised walk over all (row, tree) pairs; measured on 200 trees x 24 features.
_COMPILED_TREES_MAX_ROWS = 64


def scorer(model: Any, columns: tuple[str, ...], task: str = BINARY) -> tuple[Scorer, str]:
    """A function scoring a float matrix (columns in `columns` order) with `model`, and its path.

    What it returns is the task's answer (glue.training.predict): P(positive) for binary
    classification, the predicted value for regression. The path is ``compiled`` (numpy
    transforms and trees), ``numpy`` (sklearn's fitted steps on numpy column slices) or
    ``DataFrame`` (the model's own predict_proba / predict). Either way scoring runs
    on one OpenMP thread: a request is a few rows, and an OpenMP fan-out per tree costs more than
    it saves (1.5 ms becomes 4-70 ms on a busy 2-core host). The limit is per calling thread in
    OpenMP, hence set around each call (~15 us), not once at startup.
    """
    import pandas as pd
    from threadpoolctl import ThreadpoolController

    names = list(columns)
    controller = ThreadpoolController()  # after the model's import: its OpenMP runtime is loaded

    def generic(x: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(x, columns=names)
        return model.predict(frame) if task == REGRESSION else model.predict_proba(frame)[:, 1]

    def one_thread(predict: Scorer) -> Scorer:
        def limited(x: np.ndarray) -> np.ndarray:
            with controller.limit(limits=1, user_api="openmp"):
                return predict(x)

        return limited

    probe = probe_matrix(len(columns))
    expected = generic(probe)
    for path, build in (("compiled", _compiled_pipeline), ("numpy", _numpy_pipeline)):
        try:
            fast = build(model, columns, task)
            if fast is None:
                continue
            rtol = 1e-10 if task == REGRESSION else 0.0  # values in the label's units, not in [0, 1]
            if np.allclose(fast(probe), expected, rtol=rtol, atol=1e-12, equal_nan=True):
                return one_thread(fast), path
            log.warning("%s scoring path differs from the model's own: not used", path)
        except Exception as exc:  # an unexpected pipeline shape: the generic path is always right
            log.info("%s scoring path not usable (%s)", path, exc)
    return one_thread(generic), "DataFrame"


def probe_matrix(n_columns: int) -> np.ndarray:
    """64 rows spanning many magnitudes, with NaNs, zeros and negatives: what a fast path must match."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(1.0, 1.5, size=(64, n_columns))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[rng.random(x.shape) < 0.1] *= -1
    x[0] = 0.0
    x[1] = np.nan
    return x


# --- sklearn's fitted steps on numpy slices ---------------------------------------------------------


_Parts = tuple[list[tuple[np.ndarray, Any]], list[Any], Any]


def _column_parts(model: Any, columns: tuple[str, ...], task: str) -> _Parts | None:
    """(column indices, transformer) per ColumnTransformer part, the later steps, the estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    method = "predict" if task == REGRESSION else "predict_proba"
    if not isinstance(model, Pipeline) or not hasattr(model.steps[-1][1], method):
        return None
    steps = [step for _, step in model.steps[:-1]]
    if not steps or not isinstance(steps[0], ColumnTransformer) or getattr(steps[0], "sparse_output_", False):
        return None
    position = {c: i for i, c in enumerate(columns)}
    parts: list[tuple[np.ndarray, Any]] = []
    for _, transformer, cols in steps[0].transformers_:
        if isinstance(transformer, str) and transformer == "drop" or len(cols) == 0:
            continue
        if not all(isinstance(c, str) and c in position for c in cols):
            return None  # selected by index or callable: leave it to sklearn
        idx = np.array([position[c] for c in cols], dtype=np.intp)
        parts.append((idx, transformer))
    if not parts or any(isinstance(t, str) and t != "passthrough" for _, t in parts):
        return None
    return parts, steps[1:], model.steps[-1][1]


def _numpy_pipeline(model: Any, columns: tuple[str, ...], task: str) -> Scorer | None:
    found = _column_parts(model, columns, task)
    if found is None:
        return None
    parts, rest, estimator = found
    parts = [(idx, t if isinstance(t, str) else _unnamed(t)) for idx, t in parts]
    rest = [_unnamed(step) for step in rest]
    estimator = _unnamed(estimator)

    def predict(x: np.ndarray) -> np.ndarray:
        outs = [x[:, idx] if isinstance(t, str) else t.transform(x[:, idx]) for idx, t in parts]
        z = outs[0] if len(outs) == 1 else np.hstack(outs)
        for step in rest:
            z = step.transform(z)
        return estimator.predict(z) if task == REGRESSION else estimator.predict_proba(z)[:, 1]

    return predict


def _unnamed(estimator: Any) -> Any:
    """A copy without `feature_names_in_`, so it takes plain arrays without a warning per call."""
    from sklearn.pipeline import Pipeline

    clone = copy.deepcopy(estimator)
    stack = [clone]
    while stack:
        est = stack.pop()
        if isinstance(est, Pipeline):
            stack.extend(step for _, step in est.steps if not isinstance(step, str))
        elif "feature_names_in_" in vars(est):
            del est.feature_names_in_
    return clone


# --- the same numbers, compiled to numpy ------------------------------------------------------------


def _compiled_pipeline(model: Any, columns: tuple[str, ...], task: str) -> Scorer | None:
    """Imputer/scaler arithmetic plus a vectorised tree walk, for glue.training's HGB pipeline."""
    found = _column_parts(model, columns, task)
    if found is None or found[1]:
        return None
    parts, _, estimator = found
    transforms: list[tuple[np.ndarray, list[Callable[[np.ndarray], np.ndarray]]]] = []
    for idx, transformer in parts:
        steps = [] if isinstance(transformer, str) else _compiled_steps(transformer)
        if steps is None:
            return None
        transforms.append((idx, steps))
    trees = _CompiledTrees.of(estimator)
    if trees is None:
        return None
    fallback = _numpy_pipeline(model, columns, task)

    def predict(x: np.ndarray) -> np.ndarray:
        if x.shape[0] > _COMPILED_TREES_MAX_ROWS and fallback is not None:
            return fallback(x)
        outs = []
        for idx, steps in transforms:
            z = x[:, idx]
            for step in steps:
                z = step(z)
            outs.append(z)
        return trees.predict(outs[0] if len(outs) == 1 else np.hstack(outs))

    return predict


def _compiled_steps(transformer: Any) -> list[Callable[[np.ndarray], np.ndarray]] | None:
    """numpy versions of a chain of SimpleImputer / StandardScaler / passthrough, or None otherwise."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    chain = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    for step in chain:
        if isinstance(step, SimpleImputer):
            fill = np.asarray(step.statistics_, dtype=np.float64)
            if step.add_indicator or np.isnan(fill).any() or not _is_nan(step.missing_values):
                return None  # indicator columns or dropped all-empty columns: leave it to sklearn
            steps.append(lambda z, fill=fill: np.where(np.isnan(z), fill, z))
        elif isinstance(step, StandardScaler):
            mean = step.mean_ if step.with_mean else 0.0
            scale = step.scale_ if step.with_std else 1.0
            steps.append(lambda z, mean=mean, scale=scale: (z - mean) / scale)
        elif isinstance(step, FunctionTransformer) and step.func is None:
            continue  # "passthrough", as a fitted ColumnTransformer stores it
        else:
            return None
    return steps


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


class _CompiledTrees:
    """All trees of a binary HistGradientBoostingClassifier (or a squared-error
    HistGradientBoostingRegressor) as flat arrays, walked level by level.

    Every (row, tree) pair holds a node index; each step moves all of them one level down (leaves
    point to themselves), so a request costs ~max_depth numpy operations instead of one call per
    tree. Decisions are sklearn's: NaN goes where the split learned to send missing values,
    otherwise left when value <= threshold.
    """

    def __init__(self, nodes: list[np.ndarray], baseline: float, logistic: bool = True) -> None:
        sizes = [len(n) for n in nodes]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        allnodes = np.concatenate(nodes)
        shift = np.repeat(offsets, sizes)
        own = np.arange(len(allnodes), dtype=np.intp)
        leaf = allnodes["is_leaf"].astype(bool)
        self.feature = np.where(leaf, 0, allnodes["feature_idx"]).astype(np.intp)
        self.threshold = np.where(leaf, np.inf, allnodes["num_threshold"])
        self.missing_left = allnodes["missing_go_to_left"].astype(bool) | leaf
        self.left = np.where(leaf, own, allnodes["left"].astype(np.intp) + shift)
        self.right = np.where(leaf, own, allnodes["right"].astype(np.intp) + shift)
        self.value = np.where(leaf, allnodes["value"], 0.0)
        self.roots = offsets
        self.depth = int(allnodes["depth"].max())
        self.baseline = baseline
        self.logistic = logistic  # classifier: P(class 1); regressor: the raw sum

    @classmethod
    def of(cls, estimator: Any) -> _CompiledTrees | None:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        regressor = isinstance(estimator, HistGradientBoostingRegressor) and estimator.loss == "squared_error"
        binary = isinstance(estimator, HistGradientBoostingClassifier) and len(estimator.classes_) == 2
        if not (regressor or binary):
            return None
        if getattr(estimator, "_preprocessor", None) is not None:
            return None  # categorical features encoded inside the estimator
        predictors = [tree for iteration in estimator._predictors for tree in iteration]
        if any(tree.nodes["is_categorical"].any() for tree in predictors):
            return None
        return cls([tree.nodes for tree in predictors], float(np.ravel(estimator._baseline_prediction)[0]),
                   logistic=binary)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """baseline + the sum of the leaves reached; for a classifier its logistic, P(class 1)."""
        rows = np.arange(x.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (x.shape[0], len(self.roots)))
        for _ in range(self.depth):
            v = x[rows, self.feature[node]]
            left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            node = np.where(left, self.left[node], self.right[node])
        raw = self.baseline + self.value[node].sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw)) if self.logistic else raw

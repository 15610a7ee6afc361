"""Model reloading: watch each model's registry aliases, load a version that moved there, swap one reference.

Why a module of its own: what requests of one model score with (:class:`Models`) is replaced as a
whole by the reloader thread, never changed in place, so a request keeps the models it grabbed when
it started. A failed load keeps the old model and says why in the log and in
``glue_serve_model_reloads_total{result="failed"}``; that version is tried again after a minute, in
case the cause was passing. The same thread opens the Feast store (and re-opens it after an outage),
derives each model's request schema from its feature service once the registry is readable, and
refreshes Feast's registry cache, so no request pays for any of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from glue import contract
from glue.contract import CHALLENGER, CHAMPION
from glue.errors import GlueError, unreachable_service
from glue.serving.schema import RequestSchema
from glue.serving.store import StoreHandle, open_store

if TYPE_CHECKING:
    import numpy as np
    from feast import FeatureStore

    from glue.serving.config import ServingParams
    from glue.serving.metrics import Metrics
    from glue.settings import ModelSpec, Settings

log = logging.getLogger(__name__)

RETRY_FAILED_SECONDS = 60.0  # a version that failed to load is tried again after this long


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and how to score a float matrix with it."""

    name: str
    version: str
    alias: str
    task: str  # binary_classification | regression (version tag glue.task, else the model spec's)
    feature_service: str
    columns: tuple[str, ...]  # the model's inputs in training order (version tag glue.feature_columns)
    predict: Callable[[np.ndarray], np.ndarray]  # rows x columns float64 -> P(positive) or the value
    scoring_path: str  # glue.scoring.scorer's path: compiled, numpy or DataFrame
    loaded_at: float


def load_model(settings: Settings, model: ModelSpec, alias: str, store: FeatureStore) -> ServedModel | None:
    """The version of `model` behind `alias` (None if there is none), checked against its Feast service."""
    from glue.adapters import feast, mlflow

    ref = mlflow.get_alias(model.name, alias)
    if ref is None:
        return None
    return load_version(model, ref, alias, store, feast, mlflow)


def load_version(model: ModelSpec, ref: Any, alias: str, store: FeatureStore, feast: Any,
                 mlflow: Any, schema: RequestSchema | None = None) -> ServedModel:
    """Load one registered version for serving, refusing it if Feast no longer serves its inputs
    or if its feature service needs a request field the model's request schema lacks."""
    from glue import scoring

    columns = tuple(contract.feature_columns(ref.tags))
    if not columns:
        raise GlueError(f"{ref.name} version {ref.version} has no tag {contract.FEATURE_COLUMNS}: it was "
                        "not trained by `glue train`, so its input columns are unknown")
    service = ref.tags.get(contract.FEATURE_SERVICE) or model.feature_service
    provided, _ = feast.feature_columns(store, service)
    missing = [c for c in columns if c not in provided]
    if missing:
        raise GlueError(f"{ref.name} version {ref.version} needs column(s) {', '.join(missing[:5])} that "
                        f"Feast feature service '{service}' does not provide")
    if schema is not None and service != schema.feature_service:
        inputs = feast.service_inputs(store, service)
        lacking = [f for f in (*inputs.join_keys, *inputs.request_fields) if f not in schema.types]
        if lacking:
            raise GlueError(f"{ref.name} version {ref.version} is served on '{service}', which needs request "
                            f"field(s) {', '.join(lacking)} that the requests of '{schema.feature_service}' "
                            "do not carry")
    task = ref.tags.get(contract.TASK) or model.task
    estimator = mlflow.load_sklearn_model(ref.uri)
    predict, path = scoring.scorer(estimator, columns, task)
    return ServedModel(name=ref.name, version=ref.version, alias=alias, task=task, feature_service=service,
                       columns=columns, predict=predict, scoring_path=path, loaded_at=time.time())


@dataclass(frozen=True)
class Models:
    """What requests of one model score with; replaced as a whole, never changed in place."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None


@dataclass
class ModelState:
    """One served model: its spec and policy, the versions loaded, its request schema, what is missing."""

    spec: ModelSpec
    params: ServingParams
    models: Models = Models()
    schema: RequestSchema | None = None
    model_error: str | None = "model not loaded yet"
    schema_error: str | None = "request schema not derived yet (the feature store is not open)"

    def problems(self) -> list[str]:
        """Why this model cannot answer now ([] when it can)."""
        model_error = self.model_error if self.models.champion is None else None
        schema_error = self.schema_error if self.schema is None else None
        return [r for r in (schema_error, model_error) if r]


@dataclass
class ServingState:
    """What the reloader swaps and requests read: every model's state, the store, why either is missing."""

    models: dict[str, ModelState] = field(default_factory=dict)
    store: StoreHandle | None = None
    store_error: str | None = "feature store not opened yet"

    def problems(self) -> list[str]:
        """Why the server cannot answer every model now ([] when it can): /ready and the ready gauge."""
        out = [self.store_error] if self.store_error else []
        for name, model in self.models.items():
            out.extend(f"{name}: {p}" for p in model.problems())
        return out


class Reloader:
    """One round per the shortest ``serving.poll_seconds``: the store first, then every model's aliases."""

    def __init__(self, settings: Settings, state: ServingState, metrics: Metrics) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self._failed: dict[tuple[str, str], tuple[str, float]] = {}  # (model, alias) -> (version, when)

    @property
    def poll_seconds(self) -> float:
        return min(m.params.poll_seconds for m in self.state.models.values())

    def run(self, stop: Any, first_round: Any = None) -> None:
        """Poll until `stop` (a threading.Event) is set: the reloader thread's body. `first_round`
        (an Event) is set once the first round is over, loaded or not."""
        from glue.adapters import mlflow

        mlflow.configure(self.settings)
        while not stop.is_set():
            try:
                self.poll_once()
            finally:
                if first_round is not None:
                    first_round.set()
            stop.wait(self.poll_seconds)

    def poll_once(self) -> None:
        """One round: store first (schemas and models are checked against it), then each model."""
        self._ensure_store()
        handle = self.state.store
        if handle is None:
            return
        for model in self.state.models.values():
            if model.schema is None:
                self._derive_schema(model, handle)
            if model.schema is None:
                continue
            aliases = [(CHAMPION, model.params.champion_alias)]
            if model.params.mode != "off":
                aliases.append((CHALLENGER, model.params.challenger_alias))
            for slot, alias in aliases:
                self._reload(model, slot, alias, handle)
            self.metrics.ready.labels(model=model.spec.name).set(
                0 if model.problems() or self.state.store_error else 1)

    def _derive_schema(self, model: ModelState, handle: StoreHandle) -> None:
        from glue.adapters import feast

        spec = model.spec
        try:
            inputs = feast.service_inputs(handle.store, spec.feature_service)
            model.schema = RequestSchema(spec.name, inputs, self.settings.params.validation.columns,
                                         self.settings.params.data.event_id, model.params.max_batch_rows)
            model.schema_error = None
            log.info("%s: requests carry %s", spec.name, model.schema.describe())
        except Exception as exc:
            model.schema_error = f"request schema of feature service '{spec.feature_service}': {exc}"
            log.warning("%s: %s", spec.name, model.schema_error)

    def _ensure_store(self) -> None:
        state = self.state
        handle = state.store
        try:
            if handle is None or state.store_error is not None:
                fresh = open_store(self.settings)
                if handle is not None:
                    self._probe(fresh)  # the old one failed: use the new one only if it reads
                state.store, state.store_error = fresh, None
                log.info("feature store opened (%s)", fresh.kind())
            else:
                handle.refresh()  # here, so no request pays for an expired cache
        except Exception as exc:
            reason = (unreachable_service(exc) or f"{type(exc).__name__}: {exc}").strip()[:500]
            if handle is None:
                state.store_error = f"cannot open the feature store: {reason}"
            log.warning("feature store: %s", reason)

    def _probe(self, handle: StoreHandle) -> None:
        """Read one row of every model's feature service: raises if the store does not work."""
        for model in self.state.models.values():
            if model.schema is None:
                continue
            champion = model.models.champion
            service = champion.feature_service if champion else model.schema.feature_service
            handle.reader(service).read(model.schema.entity_rows([model.schema.probe_row()]))

    def _reload(self, model: ModelState, slot: str, alias: str, handle: StoreHandle) -> None:
        from glue.adapters import feast, mlflow

        name = model.spec.name
        current: ServedModel | None = getattr(model.models, slot)
        try:
            ref = mlflow.get_alias(name, alias)
        except Exception as exc:
            log.warning("registry unreachable, keeping %s of %s: %s", describe(current), name, exc)
            if current is None:
                model.model_error = f"registry unreachable: {exc}"
            return
        if ref is None:
            if slot == CHAMPION and current is None:
                model.model_error = f"registered model '{name}' has no alias '{alias}'"
            elif slot == CHALLENGER and current is not None:
                model.models = replace(model.models, challenger=None)
            return
        if current is not None and current.version == ref.version:
            return
        failed = self._failed.get((name, alias))
        if failed and failed[0] == ref.version and time.monotonic() - failed[1] < RETRY_FAILED_SECONDS:
            return  # the same version failed a moment ago: retry it later, not on every poll
        started = time.perf_counter()
        try:
            loaded = load_version(model.spec, ref, alias, handle.store, feast, mlflow, model.schema)
            handle.reader(loaded.feature_service)
        except Exception as exc:
            self.metrics.reloads.labels(model=name, alias=alias, result="failed").inc()
            if not failed or failed[0] != ref.version:
                log.error("could not load %s version %s (alias %s), keeping %s: %s", name, ref.version,
                          alias, describe(current), exc)
            self._failed[(name, alias)] = (ref.version, time.monotonic())
            if current is None:
                model.model_error = f"loading version {ref.version} failed: {exc}"
            return
        model.models = replace(model.models, **{slot: loaded})  # the swap: one reference
        self._failed.pop((name, alias), None)
        if slot == CHAMPION:
            model.model_error = None
        self.metrics.reloads.labels(model=name, alias=alias, result="ok").inc()
        self.metrics.model_version.labels(model=name, alias=alias).set(float(loaded.version))
        log.warning("serving %s version %s as %s (was %s; loaded in %.1f s, %s scoring path)",
                    name, loaded.version, alias, describe(current), time.perf_counter() - started,
                    loaded.scoring_path)


def describe(model: ServedModel | None) -> str:
    """"version 3" or "no model", for the log."""
    return f"version {model.version}" if model else "no model"

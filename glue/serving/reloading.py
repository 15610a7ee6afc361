"""Model reloading: watch the registry aliases, load a version that moved there, swap one reference.

Why a module of its own: what requests score with (:class:`Models`) is replaced as a whole by the
reloader thread, never changed in place, so a request keeps the models it grabbed when it started.
A failed load keeps the old model and says why in the log and in
``glue_serve_model_reloads_total{result="failed"}``; that version is tried again after a minute, in
case the cause was passing. The same thread re-opens the Feast store after an outage and refreshes
Feast's registry cache, so no request pays for either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from glue import contract
from glue.contract import CHALLENGER, CHAMPION
from glue.errors import GlueError
from glue.serving.schema import entity_rows
from glue.serving.store import StoreHandle, open_store

if TYPE_CHECKING:
    import numpy as np
    from feast import FeatureStore

    from glue.serving.config import ServingParams
    from glue.serving.metrics import Metrics
    from glue.settings import Settings

log = logging.getLogger(__name__)

RETRY_FAILED_SECONDS = 60.0  # a version that failed to load is tried again after this long


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and how to score a float matrix with it."""

    name: str
    version: str
    alias: str
    feature_service: str
    columns: tuple[str, ...]  # the model's inputs in training order (version tag glue.feature_columns)
    predict: Callable[[np.ndarray], np.ndarray]  # rows x columns float64 -> P(fraud)
    scoring_path: str  # glue.scoring.scorer's path: compiled, numpy or DataFrame
    loaded_at: float


def load_model(settings: Settings, alias: str, store: FeatureStore) -> ServedModel | None:
    """The version behind `alias` (None if there is none), checked against the Feast service."""
    from glue import feature_store, tracking

    name = settings.params.train.registered_model_name
    ref = tracking.get_alias(name, alias)
    if ref is None:
        return None
    return load_version(settings, ref, alias, store, feature_store, tracking)


def load_version(settings: Settings, ref: Any, alias: str, store: FeatureStore, feature_store: Any,
                 tracking: Any) -> ServedModel:
    """Load one registered version for serving, refusing it if Feast no longer serves its inputs."""
    from glue import scoring

    columns = tuple(contract.feature_columns(ref.tags))
    if not columns:
        raise GlueError(f"{ref.name} version {ref.version} has no tag {contract.FEATURE_COLUMNS}: it was "
                        "not trained by `glue train`, so its input columns are unknown")
    service = ref.tags.get(contract.FEATURE_SERVICE) or settings.params.features.feature_service
    provided, _ = feature_store.feature_columns(store, service)
    missing = [c for c in columns if c not in provided]
    if missing:
        raise GlueError(f"{ref.name} version {ref.version} needs column(s) {', '.join(missing[:5])} that "
                        f"Feast feature service '{service}' does not provide")
    model = tracking.load_sklearn_model(ref.uri)
    predict, path = scoring.scorer(model, columns)
    return ServedModel(name=ref.name, version=ref.version, alias=alias, feature_service=service,
                       columns=columns, predict=predict, scoring_path=path, loaded_at=time.time())


@dataclass(frozen=True)
class Models:
    """What requests score with; replaced as a whole, never changed in place."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None


@dataclass
class ServingState:
    """What the reloader swaps and requests read: the models, the store, and why either is missing."""

    models: Models = Models()
    store: StoreHandle | None = None
    store_error: str | None = "feature store not opened yet"
    model_error: str | None = "model not loaded yet"

    def problems(self) -> list[str]:
        """Why the server cannot answer now ([] when it can): /ready and the ready gauge."""
        model_error = self.model_error if self.models.champion is None else None
        return [r for r in (model_error, self.store_error) if r]


class Reloader:
    """One round of the reloader per ``serving.poll_seconds``: store first, then the aliases."""

    def __init__(self, settings: Settings, params: ServingParams, state: ServingState, metrics: Metrics,
                 probe: Callable[[], Any]) -> None:
        self.settings = settings
        self.params = params
        self.state = state
        self.metrics = metrics
        self.probe_row = probe  # a valid request row, to check that a re-opened store reads
        self.model_name = settings.params.train.registered_model_name
        self._failed: dict[str, tuple[str, float]] = {}  # alias -> (version whose load failed, when)

    def run(self, stop: Any) -> None:
        """Poll until `stop` (a threading.Event) is set: the reloader thread's body."""
        from glue import tracking

        tracking.configure(self.settings)
        while not stop.is_set():
            self.poll_once()
            stop.wait(self.params.poll_seconds)

    def poll_once(self) -> None:
        """One round of the reloader: store first (models are checked against it), then aliases."""
        self._ensure_store()
        handle = self.state.store
        if handle is None:
            return
        aliases = [(CHAMPION, self.params.champion_alias)]
        if self.params.mode != "off":
            aliases.append((CHALLENGER, self.params.challenger_alias))
        for slot, alias in aliases:
            self._reload(slot, alias, handle)
        self.metrics.ready.set(0 if self.state.problems() else 1)

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
            reason = f"{type(exc).__name__}: {exc}".strip()[:500]
            if handle is None:
                state.store_error = f"cannot open the feature store: {reason}"
            log.warning("feature store: %s", reason)

    def _probe(self, handle: StoreHandle) -> None:
        champion = self.state.models.champion
        service = champion.feature_service if champion else self.settings.params.features.feature_service
        handle.reader(service).read(entity_rows([self.probe_row()], [0]))

    def _reload(self, slot: str, alias: str, handle: StoreHandle) -> None:
        from glue import feature_store, tracking

        state = self.state
        current: ServedModel | None = getattr(state.models, slot)
        try:
            ref = tracking.get_alias(self.model_name, alias)
        except Exception as exc:
            log.warning("registry unreachable, keeping %s: %s", describe(current), exc)
            if current is None:
                state.model_error = f"registry unreachable: {exc}"
            return
        if ref is None:
            if slot == CHAMPION and current is None:
                state.model_error = f"registered model '{self.model_name}' has no alias '{alias}'"
            elif slot == CHALLENGER and current is not None:
                state.models = replace(state.models, challenger=None)
            return
        if current is not None and current.version == ref.version:
            return
        failed = self._failed.get(alias)
        if failed and failed[0] == ref.version and time.monotonic() - failed[1] < RETRY_FAILED_SECONDS:
            return  # the same version failed a moment ago: retry it later, not on every poll
        started = time.perf_counter()
        try:
            loaded = load_version(self.settings, ref, alias, handle.store, feature_store, tracking)
            handle.reader(loaded.feature_service)
        except Exception as exc:
            self.metrics.reloads.labels(alias=alias, result="failed").inc()
            if not failed or failed[0] != ref.version:
                log.error("could not load %s version %s (alias %s), keeping %s: %s", self.model_name,
                          ref.version, alias, describe(current), exc)
            self._failed[alias] = (ref.version, time.monotonic())
            if current is None:
                state.model_error = f"loading version {ref.version} failed: {exc}"
            return
        state.models = replace(state.models, **{slot: loaded})  # the swap: one reference
        self._failed.pop(alias, None)
        if slot == CHAMPION:
            state.model_error = None
        self.metrics.reloads.labels(alias=alias, result="ok").inc()
        self.metrics.model_version.labels(model=self.model_name, alias=alias).set(float(loaded.version))
        log.warning("serving %s version %s as %s (was %s; loaded in %.1f s, %s scoring path)",
                    self.model_name, loaded.version, alias, describe(current),
                    time.perf_counter() - started, loaded.scoring_path)


def describe(model: ServedModel | None) -> str:
    """"version 3" or "no model", for the log."""
    return f"version {model.version}" if model else "no model"

"""The feature stage, and the point-in-time frames every model is trained, gated and monitored on.

The stage (`glue features`): the validated event batches go through the project's own
transformation step (params.yaml `features.transform`: raw batches -> the tables its feature views
read, keyed by Feast data source), each table is written where its source reads, then `feast apply`
and an incremental materialization to the online store. The glue knows no column of any project:
what a model needs comes from its Feast feature service (the join keys of its views, the request
fields of its on-demand views) and from its label (a LabelView field or a labels source).

A model's training frame is its labelled events with its feature service's features, point in
time (Feast's `get_historical_features`): the label rows known at `until`, completed from the event
batches with whatever the service needs that the labels do not carry (joined on the label's keys).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import project_code
from glue.errors import GlueError, SettingsError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from feast import FeatureStore

    from glue.adapters.feast import ServiceInputs
    from glue.settings import ModelSpec, Settings

EVENT_TIMESTAMP = "event_timestamp"  # the time column of Feast's entity rows (and of every frame here)
KNOWN_AT = "label_known_at"  # when a row's label became known, in label frames


@dataclass(frozen=True)
class TransformInputs:
    """What the project's transformation step is given (params.yaml `features.transform`)."""

    events: pd.DataFrame  # every validated event batch, in event order
    raw_dir: Path  # the project's raw data (DVC-versioned): labels and anything else it reads
    project_dir: Path


@dataclass(frozen=True)
class FeaturesResult:
    """What `build_features` wrote, registered and materialized, and how long each part took."""

    tables: dict[str, int]  # data source -> rows written
    locations: dict[str, str]  # data source -> where
    feature_views: list[str]
    feature_services: list[str]
    materialized_start: dt.datetime | None
    materialized_end: dt.datetime | None
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        tables = ", ".join(f"{name} {rows} rows" for name, rows in self.tables.items()) or "none"
        window = (f"materialized {self.materialized_start:%Y-%m-%d %H:%M} .. "
                  f"{self.materialized_end:%Y-%m-%d %H:%M} UTC to the online store"
                  if self.materialized_end else "nothing to materialize")
        return (f"features: tables {tables}\n"
                f"feast apply: views {', '.join(self.feature_views)}; "
                f"services {', '.join(self.feature_services)}\n"
                f"{window}\ntime: {timing}")


@dataclass(frozen=True)
class TrainingFrame:
    """Labelled events with their point-in-time features, ready for one model."""

    # one row per labelled event, sorted by event time: the service's inputs (join keys, request
    # fields), the feature columns and the label
    df: pd.DataFrame
    feature_columns: list[str]  # the model's inputs, in a fixed order, as Feast names them
    feature_service: str
    feature_refs: list[str]
    label_column: str

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name for a design matrix
        return self.df[self.feature_columns]

    @property
    def y(self) -> pd.Series:
        return self.df[self.label_column]


def build_features(settings: Settings) -> FeaturesResult:
    """The stage: the project's tables from the validated batches, `feast apply`, materialize online."""
    from glue.adapters import feast

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    store = feast.open_store(settings, parse_repo=True)
    contents = feast.repo_contents(settings, store)
    seconds["open"] = time.perf_counter() - t0

    tables: dict[str, Any] = {}
    transform = settings.params.features.transform
    if transform:
        t0 = time.perf_counter()
        build = project_code.load_callable(transform, settings.project_dir, "features.transform")
        tables = build(TransformInputs(read_events(settings), settings.raw_dir, settings.project_dir))
        if not isinstance(tables, dict):
            raise GlueError(f"params.yaml features.transform ({transform}) returned {type(tables).__name__}, "
                            "not a mapping of Feast data source name -> DataFrame")
        seconds["transform"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    locations = {name: feast.write_source_table(settings, store, contents, name, df)
                 for name, df in tables.items()}
    seconds["write"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    applied = feast.apply_repo(settings, store, contents)
    check_models(settings, store)
    seconds["apply"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ends = [df[_timestamp_of(contents, name)].max() for name, df in tables.items() if len(df)]
    window = feast.materialize(store, max(ends).to_pydatetime()) if ends else None
    seconds["materialize"] = time.perf_counter() - t0

    return FeaturesResult(
        tables={name: len(df) for name, df in tables.items()},
        locations=locations,
        feature_views=[*applied.feature_views, *applied.on_demand_feature_views],
        feature_services=applied.feature_services,
        materialized_start=window.start if window else None,
        materialized_end=window.end if window else None,
        seconds=seconds,
    )


def check_models(settings: Settings, store: FeatureStore, models: list[ModelSpec] | None = None) -> None:
    """Model specs (default: all) against the registered repo: the feature service, the label view
    and field, and a label fit for the task. An error names the key in params.yaml."""
    from glue.adapters import feast

    services = set(feast.feature_service_names(store))
    for model in models if models is not None else settings.models:
        key = f"params.yaml models.{model.name}"
        if model.feature_service not in services:
            raise SettingsError(f"{key}.feature_service: no feature service '{model.feature_service}' in "
                                f"{settings.feast_repo} (services: {', '.join(sorted(services)) or 'none'})")
        label = model.label
        if label.view is not None:
            rows = feast.label_rows(settings, store, label.view)
            if label.field not in rows.fields:
                raise SettingsError(f"{key}.label.field: label view '{label.view}' has no field "
                                    f"'{label.field}' (fields: {', '.join(rows.fields)})")
            kind = rows.fields[label.field]
            numeric = kind.startswith(("Int", "Float", "Bool"))
            if not numeric:
                raise SettingsError(f"{key}.label.field: '{label.field}' is {kind}; task {model.task} "
                                    "needs a numeric (or boolean) label")


def training_frame(settings: Settings, model: ModelSpec, *, until: dt.datetime | None = None,
                   since: dt.datetime | None = None, store: FeatureStore | None = None,
                   select: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> TrainingFrame:
    """The model's events whose label is known at `until` (default: all), features joined by Feast;
    only events at or after `since` when given (monitoring's recent labelled days).

    `select` picks among the labelled events before Feast joins their features (training's
    max_train_rows sample): the point-in-time join is the costly part, and it then joins only
    the rows a fit will use.
    """
    from glue.adapters import feast

    store = store or feast.open_store(settings)
    check_models(settings, store, [model])
    inputs = feast.service_inputs(store, model.feature_service)
    labels = read_label_rows(settings, model, store, until=until, since=since)
    if labels.empty:
        raise GlueError(f"model '{model.name}': no labelled events"
                        + (f" known at {until}" if until is not None else "")
                        + f" (label {_label_origin(model)})")
    rows = _with_service_inputs(settings, model, inputs, labels, since=since)
    if select is not None:
        rows = select(rows)
    label = model.label.field
    # the label's own keys too (an event id): which events a model was trained on stays visible
    keys = [c for c in labels.columns if c not in (EVENT_TIMESTAMP, KNOWN_AT, label)
            and c not in _input_columns(inputs)]
    joined = _join_features(settings, store, inputs, rows, extra=[*keys, label])
    keep = [*keys, *_input_columns(inputs), *inputs.columns, label]
    return TrainingFrame(df=joined[keep], feature_columns=inputs.columns,
                         feature_service=inputs.feature_service, feature_refs=inputs.refs, label_column=label)


def scoring_frame(settings: Settings, model: ModelSpec, events: pd.DataFrame,
                  store: FeatureStore | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Point-in-time features of given event rows, labelled or not: what the model saw then.

    Returns the rows in event order (the service's inputs, the feature columns) and the column list.
    Used by batch scoring and by monitoring for the current window and the labelled one.
    """
    from glue.adapters import feast

    store = store or feast.open_store(settings)
    inputs = feast.service_inputs(store, model.feature_service)
    if events.empty:
        raise GlueError("no events to featurize")
    rows = events.rename(columns={settings.params.validation.timestamp_column: EVENT_TIMESTAMP})
    extra = [c for c in (settings.params.data.event_id,) if c and c in rows.columns
             and c not in _input_columns(inputs)]
    joined = _join_features(settings, store, inputs, rows, extra=extra)
    return joined[[*extra, *_input_columns(inputs), *inputs.columns]], inputs.columns


def online_features(settings: Settings, model: ModelSpec, rows: list[dict[str, Any]],
                    store: FeatureStore | None = None) -> pd.DataFrame:
    """The model's feature columns for rows being scored now, from the online store.

    Each row holds the service's join keys and request fields. Returns one row per input row,
    columns as in TrainingFrame (numbers, missing as NaN).
    """
    from glue.adapters import feast

    store = store or feast.open_store(settings)
    return feast.online_features(store, rows, model.feature_service)


def read_events(settings: Settings, *, since: dt.datetime | None = None,
                until: dt.datetime | None = None) -> pd.DataFrame:
    """The validated event batches, in event order (the time column named event_timestamp).

    With `since`/`until`, only the events with since <= time < until: a batch with none of them is
    skipped after reading its time column alone, so a day's check reads a day, not the history.
    """
    import pandas as pd

    folder = settings.validated_events_dir
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise GlueError(f"no validated batches in {folder}; run `glue validate-batches` first")
    ts = settings.params.validation.timestamp_column
    if since is None and until is None:
        df = _concat(files)
    else:
        low = _utc_timestamp(since) if since is not None else None
        high = _utc_timestamp(until) if until is not None else None

        def inside(times: pd.Series) -> pd.Series:
            keep = pd.Series(True, index=times.index)
            if low is not None:
                keep &= times >= low
            if high is not None:
                keep &= times < high
            return keep

        parts = []
        for file in files:
            if not inside(pd.to_datetime(pd.read_parquet(file, columns=[ts])[ts], utc=True)).any():
                continue
            batch = pd.read_parquet(file)
            parts.append(batch[inside(pd.to_datetime(batch[ts], utc=True)).to_numpy()])
        df = (pd.concat(parts, ignore_index=True) if parts
              else pd.read_parquet(files[0]).iloc[:0])
    df = df.rename(columns={ts: EVENT_TIMESTAMP})
    order = [EVENT_TIMESTAMP, *([settings.params.data.event_id] if settings.params.data.event_id else [])]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def read_label_rows(settings: Settings, model: ModelSpec, store: FeatureStore | None = None, *,
                    until: dt.datetime | None = None, since: dt.datetime | None = None) -> pd.DataFrame:
    """The model's label rows: its join keys, event_timestamp, label_known_at and the label field,
    only those known at `until` when given (the time a label became known; event time if none),
    and only events at or after `since` when given."""
    import pandas as pd

    from glue.adapters import feast

    label = model.label
    if label.view is not None:
        store = store or feast.open_store(settings)
        rows = feast.label_rows(settings, store, label.view)
        path, keys, ts, known = rows.path, rows.join_keys, rows.event_timestamp, rows.known_at
    else:
        path = _label_source_path(settings, label.source)
        keys, ts, known = label.join_keys, label.event_timestamp, label.known_at
    files = sorted(path.glob("*.parquet")) if path.is_dir() else ([path] if path.is_file() else [])
    wanted = list(dict.fromkeys([*keys, ts, *([known] if known else []), label.field]))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in [*keys, EVENT_TIMESTAMP, KNOWN_AT,
                                                                      label.field]})
    df = _concat(files, columns=wanted)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise SettingsError(f"params.yaml models.{model.name}.label: {path} lacks column(s) "
                            f"{', '.join(missing)}")
    df[KNOWN_AT] = df[known] if known else df[ts]
    df = df.rename(columns={ts: EVENT_TIMESTAMP})[[*keys, EVENT_TIMESTAMP, KNOWN_AT, label.field]]
    for column in (EVENT_TIMESTAMP, KNOWN_AT):
        df[column] = pd.to_datetime(df[column], utc=True)
    if until is not None:
        cutoff = pd.Timestamp(until)
        cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
        df = df[df[KNOWN_AT] <= cutoff]
    if since is not None:
        df = df[df[EVENT_TIMESTAMP] >= _utc_timestamp(since)]
    df = df[df[label.field].notna()]
    # the latest label of an event wins (a corrected label replaces the first one)
    return df.sort_values(KNOWN_AT, kind="stable").drop_duplicates([*keys, EVENT_TIMESTAMP], keep="last")


# --- helpers -------------------------------------------------------------------------------------


def _input_columns(inputs: ServiceInputs) -> list[str]:
    """The columns a row must carry for the service: join keys, event time, request fields."""
    return list(dict.fromkeys([*inputs.join_keys, EVENT_TIMESTAMP,
                               *(f for f in inputs.request_fields if f != EVENT_TIMESTAMP)]))


def _with_service_inputs(settings: Settings, model: ModelSpec, inputs: ServiceInputs,
                         labels: pd.DataFrame, since: dt.datetime | None = None) -> pd.DataFrame:
    """Label rows completed with the join keys and request fields the service needs: from the event
    batches, matched on the label's keys, when the labels do not carry them."""
    needed = _input_columns(inputs)
    missing = [c for c in needed if c not in labels.columns]
    if not missing:
        return labels
    keys = [c for c in labels.columns if c not in (EVENT_TIMESTAMP, KNOWN_AT, model.label.field)]
    events = read_events(settings, since=since)
    unknown = [c for c in missing if c not in events.columns]
    if unknown or not keys or not set(keys) <= set(events.columns):
        raise SettingsError(
            f"params.yaml models.{model.name}: feature service '{model.feature_service}' needs "
            f"{', '.join(missing)}, which the label rows ({_label_origin(model)}) do not carry"
            + (f" and the event batches lack ({', '.join(unknown)})" if unknown else
               f" and cannot be matched to the event batches on {', '.join(keys) or 'no key'}"))
    completed = labels.merge(events[[*keys, *missing]], on=keys, how="inner")
    return completed


def _label_source_path(settings: Settings, source: str) -> Path:
    """A labels source path: relative to the project, with data/raw/... following the settings'
    raw_dir (GLUE_RAW_DIR, the simulation's replay folder) like every other raw input."""
    path = Path(source)
    if path.is_absolute():
        return path
    if path.parts[:2] == ("data", "raw"):
        return settings.raw_dir.joinpath(*path.parts[2:])
    return settings.project_dir / path


def _label_origin(model: ModelSpec) -> str:
    label = model.label
    return f"view {label.view}:{label.field}" if label.view else f"source {label.source}:{label.field}"


def _join_features(settings: Settings, store: FeatureStore, inputs: ServiceInputs, rows: pd.DataFrame,
                   extra: list[str] | None = None) -> pd.DataFrame:
    """Feast's point-in-time join of the feature service onto the rows, none lost."""
    import pandas as pd

    from glue.adapters import feast

    columns = list(dict.fromkeys([*_input_columns(inputs), *(extra or [])]))
    entity_df = rows[columns]
    # Strings as categories: Feast's dask join hashes object columns slowly (~35% of its time).
    strings = [c for c in columns if entity_df[c].dtype == object]
    entity_df = entity_df.astype({c: "category" for c in strings})
    parts = _unique_key_parts(entity_df, list(inputs.join_keys))
    joined = pd.concat([feast.historical_features(store, part, inputs.feature_service)
                        for part in parts], ignore_index=True)
    if len(joined) != len(entity_df):
        raise GlueError(
            f"Feast returned {len(joined)} rows for {len(entity_df)} events: check that every event has "
            f"a row in the tables of feature service '{inputs.feature_service}' (rerun `glue features`)"
        )
    joined = joined.astype({c: "object" for c in strings})
    order = [EVENT_TIMESTAMP, *[c for c in (settings.params.data.event_id, *inputs.join_keys)
                                if c and c in joined.columns]]
    return joined.sort_values(order, kind="stable").reset_index(drop=True)


def _unique_key_parts(entity_df: pd.DataFrame, join_keys: list[str]) -> list[pd.DataFrame]:
    """Split the entity rows so no part repeats a (join key, timestamp) pair of any one key.

    Feast's file offline store keeps one row per (a view's join key, event timestamp): two events
    of one entity at the same instant (at two other entities) would lose one. Such collisions
    are rare, so nearly every row lands in the first part.
    """
    import pandas as pd

    parts = []
    remaining = entity_df
    while len(remaining):
        first = pd.Series(True, index=remaining.index)
        for key in join_keys:
            first &= ~remaining.duplicated([key, EVENT_TIMESTAMP])
        parts.append(remaining[first])
        remaining = remaining[~first]
    return parts


def _timestamp_of(contents: Any, source: str) -> str:
    return next(s.timestamp_field for s in contents.data_sources if s.name == source) or EVENT_TIMESTAMP


def _utc_timestamp(moment: dt.datetime) -> pd.Timestamp:
    import pandas as pd

    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _concat(files: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)

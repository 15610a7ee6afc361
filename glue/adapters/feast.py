"""The Feast adapter: the only glue module that imports feast.

Why an adapter: the pipeline needs five things from Feast (open the profile's store, apply the
feature repo, write the snapshot tables where the offline store reads them, materialize to the
online store, read features point-in-time and online) and nothing else. The online read for
scoring (:class:`OnlineReader`) is here too, used by `glue serve` and the tests alike. Everything goes through
Feast's own objects and functions, on the same feature_store.yaml the Feast CLI uses, so
`feast feature-views list` or `feast materialize` from feature_repo/ see exactly what glue did.

Feast prints progress to stdout; library code must not, so its output is captured and logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import atomic
from glue.errors import GlueError, SettingsError
from glue.settings import feast_prod_env

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from feast import FeatureStore

    from glue.settings import Settings

log = logging.getLogger(__name__)

_ENV_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class AppliedRepo:
    """What `feast apply` registered: the names of the repo's objects."""

    project: str
    entities: list[str]
    feature_views: list[str]
    on_demand_feature_views: list[str]
    feature_services: list[str]


@dataclass(frozen=True)
class MaterializedWindow:
    """The event-time window copied from the offline to the online store."""

    start: dt.datetime
    end: dt.datetime
    feature_views: list[str]


def open_store(settings: Settings, *, parse_repo: bool = False) -> FeatureStore:
    """The Feast store of the settings' profile, from the same feature_store.yaml the CLI reads.

    `parse_repo`: the caller goes on to parse the repo's own definitions (:func:`repo_contents`), so
    Feast is imported with its argument type checks on (:func:`import_feast`).
    """
    import_feast(type_checks=parse_repo)
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    _drop_feasts_warning_filters()
    repo, yaml_file = _repo_and_yaml(settings)
    for name, value in feast_prod_env().items():  # the service settings, where FEAST_* is not set
        os.environ.setdefault(name, value)
    _check_env_refs(yaml_file)
    try:
        config = load_repo_config(repo, yaml_file)
    except Exception as exc:  # FeastConfigError and YAML errors
        raise SettingsError(f"{yaml_file}: invalid Feast configuration: {exc}") from None
    _make_local_dirs(config, repo)
    if settings.ray is not None:  # Feast's Ray store and engine reuse this driver, authenticated
        from glue.adapters import ray

        ray.connect(settings)
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=yaml_file)
    mlflow_cfg = store.config.mlflow
    if mlflow_cfg is not None and mlflow_cfg.enabled and not mlflow_cfg.tracking_uri:
        # Feast tags the active MLflow run through its own client: it must use the glue's
        # tracking store (where that run lives), not whatever the environment says.
        mlflow_cfg.tracking_uri = settings.mlflow_tracking_uri
    return store


def import_feast(*, type_checks: bool) -> None:
    """Import Feast, the first time in this process, with or without its argument type checks.

    Why: Feast wraps its definition classes (Entity, FeatureView, FeatureService, the data sources,
    ...) in typeguard's ``@typechecked``, which instruments each method at import by re-parsing and
    recompiling the whole module it is in: 2.1 s of the 3.4 s `import feast` takes (measured, per
    process). Those checks name a wrong argument type in a feature repo's definitions, so the one
    process that parses the repo (`glue features`, through ``open_store(parse_repo=True)``) keeps
    them, as the Feast CLI does. Every other process (each training, evaluation, scoring and
    monitoring stage or Airflow task, `glue serve`) only reads back objects Feast itself wrote to
    its registry, and starts 2 s sooner without them. The decorator is swapped only while Feast's
    modules are first imported: any other use of typeguard in the process is untouched.
    """
    if "feast" in sys.modules:
        return
    if type_checks:
        import feast  # noqa: F401
        return
    import typeguard

    checked = typeguard.typechecked

    def unchecked(target: Any = None, **_: Any) -> Any:  # both forms: @typechecked, @typechecked(...)
        return target if target is not None else (lambda decorated: decorated)

    typeguard.typechecked = unchecked
    try:
        import feast  # noqa: F401
        import feast.infra.online_stores.sqlite  # noqa: F401 - the local online store, checked too
    finally:
        typeguard.typechecked = checked


def repo_contents(settings: Settings, store: FeatureStore) -> Any:
    """The repo's objects as `feast apply` would register them (Feast's own parser; .feastignore
    honoured), without registering anything: the sources the transformation step fills are known
    before the first apply."""
    from feast.repo_operations import _get_repo_contents

    repo, _ = _repo_and_yaml(settings)
    out = io.StringIO()
    with _inside_repo(repo), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "On demand feature view is an experimental", RuntimeWarning)
        try:
            return _get_repo_contents(repo, store.config.project, store.config)
        except SystemExit:  # Feast exits on a project mismatch after printing why
            raise SettingsError(f"{repo}: {out.getvalue().strip()}") from None
        except Exception as exc:  # the repo's own code: a wrong argument type (Feast's checks), a typo
            raise SettingsError(f"{_repo_line(exc, repo)}: the feature repo's definitions do not load: "
                                f"{type(exc).__name__}: {exc}") from None


def _repo_line(exc: BaseException, repo: Path) -> str:
    """`file:line` of the innermost frame of the repo's own code in `exc`'s traceback (else the repo)."""
    where, roots = str(repo), (repo, repo.resolve())
    tb = exc.__traceback__
    while tb is not None:
        filename = Path(tb.tb_frame.f_code.co_filename)
        if any(filename.is_relative_to(root) for root in roots):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
    return where


def apply_repo(settings: Settings, store: FeatureStore, contents: Any = None) -> AppliedRepo:
    """`feast apply` through Feast's own repo parser: register the repo, delete what it dropped."""
    from feast.repo_operations import apply_total_with_repo_instance

    repo, _ = _repo_and_yaml(settings)
    contents = contents if contents is not None else repo_contents(settings, store)
    out = io.StringIO()
    with _inside_repo(repo), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "On demand feature view is an experimental", RuntimeWarning)
        apply_total_with_repo_instance(
            store, store.config.project, store.registry, contents, skip_source_validation=False
        )
    log.debug("feast apply:\n%s", out.getvalue())
    return AppliedRepo(
        project=store.config.project,
        entities=sorted(e.name for e in contents.entities if e.name != "__dummy"),
        feature_views=sorted(fv.name for fv in contents.feature_views),
        on_demand_feature_views=sorted(v.name for v in contents.on_demand_feature_views),
        feature_services=sorted(s.name for s in contents.feature_services),
    )


def write_source_table(settings: Settings, store: FeatureStore, contents: Any, source: str,
                       df: pd.DataFrame) -> str:
    """Put the table of Feast data source `source` where that source reads; returns its location.

    A FileSource's parquet file is written (atomically) at its path, relative paths taken from the
    repo as Feast's CLI does; every offline store that reads FileSources (duckdb, file, ray) then
    sees it. A PostgreSQLSource's table (a team's own repo may use one) is replaced in one
    transaction, with an index on the join keys of the views that read it and the event timestamp,
    which Feast's point-in-time join needs (12.6 s -> ~1 s for 8k rows x 15k snapshots); its
    parquet copy goes to the features folder, the DVC-versioned record of what went into the table.
    """
    sources = {s.name: s for s in contents.data_sources}
    if source not in sources:
        raise GlueError(f"params.yaml features.transform returned a table for '{source}', which is no data "
                        f"source of {settings.feast_repo} (sources: {', '.join(sorted(sources))})")
    data_source = sources[source]
    timestamp = data_source.timestamp_field
    if timestamp and timestamp not in df.columns:
        raise GlueError(f"params.yaml features.transform: the table for '{source}' lacks its timestamp "
                        f"field '{timestamp}'")
    keys = sorted({c.name for fv in contents.feature_views if fv.batch_source.name == source
                   for c in fv.entity_columns})
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise GlueError(f"params.yaml features.transform: the table for '{source}' lacks join key(s) "
                        f"{', '.join(missing)}")
    kind = type(data_source).__name__
    if kind == "FileSource":
        repo, _ = _repo_and_yaml(settings)
        path = Path(data_source.path)
        path = path if path.is_absolute() else repo / path
        _write_parquet(df, path)
        return str(path)
    if kind == "PostgreSQLSource":
        table = data_source.get_table_query_string()
        return _write_postgres_table(settings, store, table, df, keys=tuple(keys), timestamp=timestamp)
    raise GlueError(f"{settings.feast_repo}: data source '{source}' is a {kind}; glue writes the "
                    "transformation's tables to FileSource (parquet) and PostgreSQLSource tables")


def _write_postgres_table(settings: Settings, store: FeatureStore, table: str, df: pd.DataFrame,
                          keys: tuple[str, ...], timestamp: str | None) -> str:
    """Replace one PostgreSQL table read by the postgres offline store; returns its location."""
    kind = store.config.offline_store.type
    if kind != "postgres":
        raise SettingsError(f"{settings.feast_yaml}: a PostgreSQLSource is read by the postgres offline "
                            f"store, but offline_store.type is '{kind}'")
    # The parquet copy is the DVC-versioned record of exactly what went into the table.
    _write_parquet(df, Path(settings.features_dir) / f"{table}.parquet")
    import sqlalchemy

    cfg = store.config.offline_store
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username=cfg.user,
        password=cfg.password or None,
        host=cfg.host,
        port=cfg.port,
        database=cfg.database,
    )
    engine = sqlalchemy.create_engine(url)
    try:
        # DDL is transactional in PostgreSQL: a concurrent reader sees the old table until commit
        with engine.begin() as conn:
            df.to_sql(table, conn, schema=cfg.db_schema, if_exists="replace", index=False, chunksize=10_000)
            if keys and timestamp:
                columns = ", ".join(f'"{c}"' for c in (*keys, timestamp))
                conn.exec_driver_sql(f'CREATE INDEX ON "{cfg.db_schema}"."{table}" ({columns})')
    finally:
        engine.dispose()
    return f"postgres:{cfg.database}.{cfg.db_schema}.{table}"


def materialize(store: FeatureStore, end: dt.datetime) -> MaterializedWindow:
    """Copy the latest feature values up to `end` into the online store, incrementally.

    Feast's incremental start for a never-materialized view is "now - ttl" by the wall clock,
    which misses data whose timestamps are not recent (a replayed or demo history); such views
    get one ordinary materialization over their ttl before `end` instead.
    """
    fvs = [fv for fv in store.list_feature_views() if fv.online]
    fresh = [fv for fv in fvs if fv.most_recent_end_time is None]
    seen = [fv for fv in fvs if fv.most_recent_end_time is not None]
    starts: list[dt.datetime] = []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if getattr(store.config.batch_engine, "type", None) == "ray.engine":
            starts = _materialize_windows(store, fresh, seen, end)
        if fresh and not starts:
            start = end - max(fv.ttl for fv in fresh)
            store.materialize(start, end, feature_views=[fv.name for fv in fresh])
            starts.append(start)
        if seen and not starts:
            store.materialize_incremental(end, feature_views=[fv.name for fv in seen])
            starts.extend(fv.most_recent_end_time for fv in seen)
    log.debug("feast materialize:\n%s", out.getvalue())
    start = min(starts) if starts else end
    return MaterializedWindow(start=_utc(start), end=_utc(end), feature_views=sorted(fv.name for fv in fvs))


def _materialize_windows(store: FeatureStore, fresh: list[Any], seen: list[Any], end: dt.datetime
                         ) -> list[dt.datetime]:
    """The same windows as :func:`materialize`, for Feast 0.67's Ray engine (`ray.engine`).

    That engine drops every row older than *now* - the view's ttl while it materializes
    (feast/infra/compute_engines/ray/nodes.py RayFilterNode), where the other engines keep the
    requested window: a history that ended more than a ttl ago would reach the online store empty.
    Each view goes to the engine as a copy without ttl (the window alone bounds its rows; the
    registered view keeps its ttl), and its interval is recorded as FeatureStore.materialize does.
    """
    from tqdm import tqdm

    provider = store._get_provider()
    fresh_start = end - max(fv.ttl for fv in fresh) if fresh else end
    starts = []
    for fv, start in [*((fv, fresh_start) for fv in fresh), *((fv, fv.most_recent_end_time) for fv in seen)]:
        view = fv.__copy__()
        view.ttl = dt.timedelta(0)
        provider.materialize_single_feature_view(
            config=store.config, feature_view=view, start_date=_utc(start), end_date=_utc(end),
            registry=store.registry, project=store.project,
            tqdm_builder=lambda total: tqdm(total=total, disable=True))
        store.registry.apply_materialization(fv, store.project, _utc(start), _utc(end))
        starts.append(start)
    return starts


def feature_columns(store: FeatureStore, feature_service: str) -> tuple[list[str], list[str]]:
    """The service's columns as Feast names them (view__feature) and its feature refs (view:feature)."""
    service = _service(store, feature_service)
    columns, refs = [], []
    for projection in service.feature_view_projections:
        for feature in projection.features:
            columns.append(f"{projection.name_to_use()}__{feature.name}")
            refs.append(f"{projection.name_to_use()}:{feature.name}")
    return columns, refs


def missing_online(store: FeatureStore, feature_service: str) -> list[str]:
    """What the store lacks for serving the service: the service itself, or its online views that were
    never materialized. Empty when `feast apply` and a materialization both reached this store."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(feature_service, allow_cache=False)
    except FeatureServiceNotFoundException:
        return [f"feature service {feature_service}"]
    online = {fv.name: fv for fv in store.list_feature_views(allow_cache=False) if fv.online}
    return [f"feature view {p.name} (never materialized)" for p in service.feature_view_projections
            if p.name in online and online[p.name].most_recent_end_time is None]


@dataclass(frozen=True)
class ServiceInputs:
    """What a feature service needs of every row it is asked about, and what it answers.

    Derived from the registry, so training, serving, batch scoring and monitoring agree on it: the
    entity join keys of its views and the request-source fields of its on-demand views, each with
    its Feast type name (Int64, Float64, String, Bool, UnixTimestamp, ...).
    """

    feature_service: str
    join_keys: dict[str, str]
    request_fields: dict[str, str]
    feature_views: list[str]
    columns: list[str]  # the answer's columns, as Feast names them (view__feature)
    refs: list[str]  # the same as feature refs (view:feature)


@dataclass(frozen=True)
class LabelRows:
    """Where a label view's rows are and how they are keyed (its batch source)."""

    view: str
    path: Path
    join_keys: list[str]
    event_timestamp: str
    known_at: str | None  # the source's created-timestamp column: when a label became known
    fields: dict[str, str]  # label fields and their Feast type names


def feature_service_names(store: FeatureStore) -> list[str]:
    """The feature services registered in the store's project."""
    return sorted(s.name for s in store.list_feature_services())


def service_inputs(store: FeatureStore, feature_service: str) -> ServiceInputs:
    """The join keys, request fields and answer columns of one feature service (see ServiceInputs)."""
    service = _service(store, feature_service)
    join_keys: dict[str, str] = {}
    request: dict[str, str] = {}
    views = []
    odfvs = {v.name: v for v in store.list_on_demand_feature_views(allow_cache=True)}
    fvs = {v.name: v for v in store.list_feature_views(allow_cache=True)}
    for projection in service.feature_view_projections:
        views.append(projection.name)
        if projection.name in fvs:
            for column in fvs[projection.name].entity_columns:
                join_keys.setdefault(column.name, str(column.dtype))
        elif projection.name in odfvs:
            odfv = odfvs[projection.name]
            for source in odfv.source_request_sources.values():
                for f in source.schema:
                    request.setdefault(f.name, str(f.dtype))
            for fv_projection in odfv.source_feature_view_projections.values():
                if fv_projection.name in fvs:
                    for column in fvs[fv_projection.name].entity_columns:
                        join_keys.setdefault(column.name, str(column.dtype))
    columns, refs = feature_columns(store, feature_service)
    return ServiceInputs(feature_service, join_keys, request, views, columns, refs)


def label_rows(settings: Settings, store: FeatureStore, view: str) -> LabelRows:
    """The batch source of a registered LabelView: its file, join keys and timestamp columns."""
    repo, _ = _repo_and_yaml(settings)
    try:
        label_view = store.get_label_view(view)
    except Exception:  # noqa: BLE001 - Feast raises its own not-found error per registry type
        names = sorted(v.name for v in store.list_label_views())
        raise SettingsError(f"params.yaml label.view: no label view '{view}' in {repo} "
                            f"(label views: {', '.join(names) or 'none'})") from None
    source = getattr(label_view.source, "batch_source", None) or label_view.source
    path = getattr(source, "path", None)
    if not path:
        raise SettingsError(f"label view '{view}' ({repo}): glue reads labels from a file source "
                            f"(or a push source with one as batch_source); it has {type(source).__name__}")
    path = Path(path)
    return LabelRows(
        view=view,
        path=path if path.is_absolute() else repo / path,
        join_keys=[c.name for c in label_view.entity_columns],
        event_timestamp=source.timestamp_field or "event_timestamp",
        known_at=source.created_timestamp_column or None,
        fields={f.name: str(f.dtype) for f in label_view.features},
    )


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, feature_service: str) -> pd.DataFrame:
    """Feast's point-in-time join of the service's features onto entity_df (full feature names).

    Categorical columns go in as plain strings: the PostgreSQL offline store uploads entity_df
    as a table and has no column type for Arrow dictionaries.
    """
    categorical = [c for c, t in entity_df.dtypes.items() if str(t) == "category"]
    if categorical:
        entity_df = entity_df.astype({c: "object" for c in categorical})
    job = store.get_historical_features(
        entity_df=entity_df, features=_service(store, feature_service), full_feature_names=True
    )
    df = job.to_df()
    for column, dtype in df.dtypes.items():
        # One time type whatever the store: PostgreSQL answers in naive UTC, DuckDB in
        # microseconds, the file store in nanoseconds with the time zone.
        if str(dtype).startswith("datetime64"):
            times = df[column] if getattr(dtype, "tz", None) else df[column].dt.tz_localize("UTC")
            df[column] = times.astype("datetime64[ns, UTC]")
    # Numeric features as float64 with NaN for missing, as the online path gives them: the file
    # store answers nullable Int64 where DuckDB answers float64.
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns, _ = feature_columns(store, feature_service)
    numeric = [c for c in columns if c in df.columns and is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]
    return df.astype({c: "float64" for c in numeric})


def online_features(store: FeatureStore, rows: list[dict[str, Any]], feature_service: str) -> pd.DataFrame:
    """The service's features for entity + request rows, from the online store (full feature names).

    Numbers only (float64, missing as NaN), as the model takes them; see :class:`OnlineReader`.
    """
    import pandas as pd

    columns, _ = feature_columns(store, feature_service)
    read = OnlineReader(store, feature_service).read(rows)
    return pd.DataFrame(read.matrix(columns), columns=columns)


# --- the repo as declared (glue init) -------------------------------------------------------------

# Feast's primitive types -> the dtypes of a params.yaml validation rule (None: no such rule).
_VALIDATION_DTYPES = {
    "INT32": "int", "INT64": "int", "FLOAT32": "float", "FLOAT64": "float", "BOOL": "bool",
    "STRING": "string", "UUID": "string", "TIME_UUID": "string",
    "UNIX_TIMESTAMP": "datetime", "ZONED_TIMESTAMP": "datetime",
}


@dataclass(frozen=True)
class FieldInfo:
    """One column of a Feast schema: its Feast type and the validation dtype it maps to."""

    name: str
    feast_type: str  # as Feast prints it: Int64, Float64, Array(String) ...
    dtype: str | None  # int | float | string | bool | datetime; None for lists, maps, bytes


@dataclass(frozen=True)
class EntityInfo:
    """An entity: the join key that keys its rows, with the key's type."""

    name: str
    join_key: str
    value_type: str  # Feast ValueType name: INT64, STRING ... (UNKNOWN when not declared)
    feast_type: str | None  # the same as a Feast type (Int64, String ...); None when not declared
    dtype: str | None


@dataclass(frozen=True)
class SourceInfo:
    """Where a view's rows come from: the batch source (of a push source, its batch source)."""

    name: str
    kind: str  # the source class: FileSource, PushSource, PostgreSQLSource ...
    path: str | None  # a FileSource's path, as declared (relative to the repo)
    timestamp_field: str | None
    created_timestamp_column: str | None


@dataclass(frozen=True)
class ViewInfo:
    """A feature view or a label view: its entities' key columns, its fields and its batch source."""

    name: str
    entities: tuple[str, ...]
    entity_columns: tuple[FieldInfo, ...]
    fields: tuple[FieldInfo, ...]
    source: SourceInfo | None

    def field(self, name: str) -> FieldInfo | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class OnDemandInfo:
    """An on-demand view: the request sources it reads (their fields come with the request)."""

    name: str
    request_sources: tuple[str, ...]
    fields: tuple[FieldInfo, ...]


@dataclass(frozen=True)
class ServiceInfo:
    """A feature service: the views it serves (feature, on-demand or label views), by name."""

    name: str
    views: tuple[str, ...]


@dataclass(frozen=True)
class RepoDescription:
    """What a Feast repo declares, read from its files without registering anything."""

    path: Path
    project: str | None
    entities: tuple[EntityInfo, ...]
    feature_views: tuple[ViewInfo, ...]
    on_demand_views: tuple[OnDemandInfo, ...]
    label_views: tuple[ViewInfo, ...]
    feature_services: tuple[ServiceInfo, ...]
    request_sources: dict[str, tuple[FieldInfo, ...]]

    def service(self, name: str) -> ServiceInfo | None:
        return next((s for s in self.feature_services if s.name == name), None)

    def label_view(self, name: str) -> ViewInfo | None:
        return next((v for v in self.label_views if v.name == name), None)

    def service_keys(self, name: str) -> tuple[FieldInfo, ...]:
        """The entity key columns a request to the service carries (one per join key)."""
        service = self.service(name)
        views = {v.name: v for v in self.feature_views}
        keys: dict[str, FieldInfo] = {}
        for view in (views[v] for v in (service.views if service else ()) if v in views):
            for column in view.entity_columns:
                keys.setdefault(column.name, column)
        return tuple(keys.values())

    def service_request_fields(self, name: str) -> tuple[FieldInfo, ...]:
        """The request-source fields the service's on-demand views need from the request itself."""
        service = self.service(name)
        odfvs = {v.name: v for v in self.on_demand_views}
        fields: dict[str, FieldInfo] = {}
        for odfv in (odfvs[v] for v in (service.views if service else ()) if v in odfvs):
            for source in odfv.request_sources:
                for f in self.request_sources.get(source, ()):
                    fields.setdefault(f.name, f)
        return tuple(fields.values())


def describe_repo(repo_path: Path) -> RepoDescription:
    """Read a Feast repo's declarations as `feast apply` would parse them, registering nothing.

    `glue init` builds a project around a team's existing repo: the model specs and the validation
    suite come from what the repo declares (entities, views, label views, services, request
    sources), so it must be read without a registry, a store or the team's data.
    """
    from feast import FileSource, PushSource
    from feast.repo_operations import parse_repo

    repo = Path(repo_path).resolve()
    if not repo.is_dir():
        raise GlueError(f"feature repo {repo}: no such directory")
    out = io.StringIO()
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ in the team's repo
    try:
        with _inside_repo(repo), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                contents = parse_repo(repo)
            except Exception as exc:  # the team's code: an import error, a bad definition ...
                raise GlueError(f"feature repo {repo}: Feast cannot parse it: "
                                f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.dont_write_bytecode = dont_write
    log.debug("feast parse_repo:\n%s", out.getvalue())

    def fields(schema: Any) -> tuple[FieldInfo, ...]:
        return tuple(_field_info(f.name, f.dtype) for f in schema)

    def source(src: Any) -> SourceInfo | None:
        if isinstance(src, PushSource) and src.batch_source is not None:
            src = src.batch_source
        if src is None:
            return None
        return SourceInfo(name=src.name, kind=type(src).__name__,
                          path=src.path if isinstance(src, FileSource) else None,
                          timestamp_field=src.timestamp_field or None,
                          created_timestamp_column=src.created_timestamp_column or None)

    from feast.types import from_value_type

    entities = []
    for entity in contents.entities:
        if entity.name == "__dummy":
            continue
        value_type = entity.value_type.name
        feast_type = None if value_type == "UNKNOWN" else from_value_type(entity.value_type)
        entities.append(EntityInfo(name=entity.name, join_key=entity.join_key, value_type=value_type,
                                   feast_type=str(feast_type) if feast_type else None,
                                   dtype=_field_info("", feast_type).dtype if feast_type else None))
    by_name = {e.name: e for e in entities}

    def view(fv: Any, src: Any) -> ViewInfo:
        # Feast infers a view's key columns at apply time when its schema omits them: until then
        # they are the join keys of its entities, typed as the entities declare
        keys = {f.name: f for f in fields(fv.entity_columns)}
        for name in fv.entities:
            entity = by_name.get(name)
            if entity is not None and entity.join_key not in keys:
                keys[entity.join_key] = FieldInfo(name=entity.join_key, dtype=entity.dtype,
                                                  feast_type=entity.feast_type or "Unknown")
        return ViewInfo(name=fv.name, entities=tuple(fv.entities), entity_columns=tuple(keys.values()),
                        fields=fields(fv.features), source=source(src))
    request_sources = {s.name: fields(s.schema) for s in contents.data_sources
                       if type(s).__name__ == "RequestSource"}
    for odfv in contents.on_demand_feature_views:
        for name, s in odfv.source_request_sources.items():
            request_sources.setdefault(name, fields(s.schema))
    project = contents.projects[0].name if contents.projects else _yaml_project(repo)
    return RepoDescription(
        path=repo,
        project=project,
        entities=tuple(sorted(entities, key=lambda e: e.name)),
        feature_views=tuple(sorted((view(fv, fv.batch_source) for fv in contents.feature_views),
                                   key=lambda v: v.name)),
        on_demand_views=tuple(sorted(
            (OnDemandInfo(name=v.name, request_sources=tuple(v.source_request_sources),
                          fields=fields(v.features)) for v in contents.on_demand_feature_views),
            key=lambda v: v.name)),
        label_views=tuple(sorted((view(lv, lv.source) for lv in contents.label_views), key=lambda v: v.name)),
        feature_services=tuple(sorted(
            (ServiceInfo(name=s.name, views=tuple(p.name for p in s.feature_view_projections))
             for s in contents.feature_services), key=lambda s: s.name)),
        request_sources=request_sources,
    )


def _field_info(name: str, feast_type: Any) -> FieldInfo:
    kind = getattr(feast_type, "name", None) if type(feast_type).__name__ == "PrimitiveFeastType" else None
    return FieldInfo(name=name, feast_type=str(feast_type), dtype=_VALIDATION_DTYPES.get(kind or ""))


def _yaml_project(repo: Path) -> str | None:
    """The project named in the repo's feature_store.yaml (when no Project object declares it)."""
    import yaml

    config = repo / "feature_store.yaml"
    try:
        data = yaml.safe_load(config.read_text()) if config.is_file() else None
    except yaml.YAMLError:
        return None
    return data.get("project") if isinstance(data, dict) else None


# --- online reads for scoring ---------------------------------------------------------------------


def open_online_store(settings: Settings) -> FeatureStore:
    """The profile's store for a long-running server: its registry loaded, no per-read MLflow lookup.

    Feast's MLflow integration would look for an active MLflow run on every online read (``auto_log``):
    a server has none, so that is pure cost.
    """
    store = open_store(settings)
    mlflow_cfg = getattr(store.config, "mlflow", None)
    if mlflow_cfg is not None and getattr(mlflow_cfg, "auto_log", False):
        mlflow_cfg.auto_log = False
    store.refresh_registry()
    _fail_fast_on_redis(store)
    return store


# A server's read of Redis gives up after this long on a socket (connect or reply).
SERVING_REDIS_TIMEOUT_SECONDS = 2.0


def _fail_fast_on_redis(store: FeatureStore) -> None:
    """Make a server's Redis reads fail within seconds when Redis is down or hangs.

    redis-py's defaults suit a batch job: a failed command is retried 3 times with exponential
    backoff up to 10 s, and a socket waits for ever. Under them, every request of a server whose
    Redis went down hung ~10 s before its 503 (tests/integration/test_store_outages.py). A server
    keeps one immediate retry (a pooled connection that died with a Redis restart is replaced on
    it) and a bounded socket timeout; materialization, a batch job, keeps Feast's client as it is.
    """
    config = store.config.online_store
    if "redis" not in str(getattr(config, "type", "")).lower():
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online = store._get_provider().online_store  # noqa: SLF001 - Feast offers no public handle
    client = online._get_client(config)  # noqa: SLF001
    if hasattr(client, "connection_pool"):  # plain Redis (a cluster client keeps Feast's defaults)
        client.connection_pool.connection_kwargs.update(socket_timeout=SERVING_REDIS_TIMEOUT_SECONDS,
                                                        socket_connect_timeout=SERVING_REDIS_TIMEOUT_SECONDS)
        client.set_retry(Retry(NoBackoff(), 1))


def refresh_registry(store: FeatureStore) -> None:
    """Reload Feast's registry cache now (a server does it between requests, so none pays for it)."""
    store.refresh_registry()


def online_store_type(store: FeatureStore) -> str:
    """The kind of online store the profile uses (sqlite, redis, ...), for logs and status pages."""
    return str(store.config.online_store.type)


_NOT_FOUND = 3  # feast FieldStatus.NOT_FOUND: no row for this entity key in the online store


@dataclass
class OnlineRead:
    """One Feast online read: the response proto, on-demand outputs, unknown entities, freshness."""

    proto: Any  # feast GetOnlineFeaturesResponse
    position: dict[str, int]  # column -> index in proto.results
    computed: dict[str, list[Any]]  # on-demand feature columns computed in-process (full names)
    unknown: list[tuple[int, str, Any]]  # (row, join key, id) without a row in the online store
    oldest: dict[str, int]  # feature view -> oldest event timestamp (epoch seconds) among the rows

    def matrix(self, columns: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        """Rows x columns float64 (missing -> NaN), in the model's column order.

        Read straight from the proto's numeric oneofs: Feast's generic to_dict() converts every
        value through its type map, ~3 ms of a 100-row request.
        """
        import numpy as np

        x = np.array([self.computed[c] if c in self.computed else self.column(c) for c in columns],
                     dtype=np.float64).T
        return x if rows is None else x[rows]

    def column(self, name: str) -> list[Any]:
        return _numbers(self.proto.results[self.position[name]].values)


def _numbers(values: Any) -> list[Any]:
    """Python numbers of a column of feast Value protos; None (-> NaN) where no value is set."""
    out = []
    for value in values:
        kind = value.WhichOneof("val")
        out.append(None if kind is None or kind == "null_val" else getattr(value, kind))
    return out


class OnlineReader:
    """Reads one feature service online, for many transactions in one call.

    The FeatureService object, the views' join keys and a representative column per view are
    looked up once; the answer is read from Feast's response proto (statuses and event
    timestamps per value) without building a DataFrame.

    On-demand views in Feast's python mode are run here, on the values just read, through the
    registry's own view object (``OnDemandFeatureView.transform_dict``: the same function that
    computed the training set). Two reasons: Feast 0.67 drops the outputs of python-mode views
    from online reads made with ``full_feature_names=True`` (which the model's column names
    need), and its generic path converts the whole response to a dict and back (~1 ms per
    request). Pandas-mode views, aliased projections or views with aggregations are left to
    Feast: the whole service is then read as one ``get_online_features`` call.
    """

    def __init__(self, store: FeatureStore, service_name: str) -> None:
        self.store = store
        self.service_name = service_name
        self.service = _service(store, service_name)  # a GlueError naming the service if unknown
        self.views: dict[str, tuple[str, ...]] = {}  # view with entities -> its join keys
        refs: list[str] = []
        on_demand: list[tuple[Any, Any]] = []  # (projection in the service, OnDemandFeatureView)
        for projection in self.service.feature_view_projections:
            try:
                view = store.get_feature_view(projection.name)
            except Exception:  # an on-demand view: computed from the request, no entity of its own
                on_demand.append((projection, store.get_on_demand_feature_view(projection.name)))
                continue
            keys = tuple(col.name for col in view.entity_columns)
            if keys and projection.features:
                self.views[f"{projection.name_to_use()}__{projection.features[0].name}"] = keys
            refs.extend(f"{projection.name}:{f.name}" for f in projection.features)
        aliased = any(p.name_alias for p in self.service.feature_view_projections)
        self.on_demand = on_demand if not aliased and all(map(_runs_here, on_demand)) else []
        self.join_keys = sorted({k for keys in self.views.values() for k in keys})
        self.refs: list[str] | None = None  # None: Feast reads (and transforms) the whole service
        if not aliased and len(self.on_demand) == len(on_demand):
            for _, odfv in self.on_demand:
                for source in odfv.source_feature_view_projections.values():
                    refs.extend(f"{source.name}:{f.name}" for f in source.features)
            self.refs = list(dict.fromkeys(refs))

    def read(self, rows: list[dict[str, Any]]) -> OnlineRead:
        """Features of entity rows (join keys plus the request fields the on-demand views need)."""
        if self.refs is None:
            response = self.store.get_online_features(features=self.service, entity_rows=rows,
                                                      full_feature_names=True)
        else:
            keys = [{k: row[k] for k in self.join_keys} for row in rows]
            response = self.store.get_online_features(features=self.refs, entity_rows=keys,
                                                      full_feature_names=True)
        proto = response.proto
        position = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        unknown: list[tuple[int, str, Any]] = []
        oldest: dict[str, int] = {}
        for column, keys in self.views.items():
            result = proto.results[position[column]]
            seen = [ts.seconds for ts, s in zip(result.event_timestamps, result.statuses, strict=True)
                    if s != _NOT_FOUND]
            if seen:
                oldest[column.split("__", 1)[0]] = min(seen)
            for i, status in enumerate(result.statuses):
                if status == _NOT_FOUND:
                    unknown.extend((i, key, rows[i].get(key)) for key in keys)
        read = OnlineRead(proto=proto, position=position, computed={}, unknown=unknown, oldest=oldest)
        for projection, odfv in self.on_demand:
            read.computed |= _on_demand(projection, odfv, read, rows)
        return read


def _runs_here(item: tuple[Any, Any]) -> bool:
    """Whether OnlineReader computes this on-demand view itself (see its docstring)."""
    projection, odfv = item
    return (odfv.mode == "python" and not odfv.singleton and not odfv.aggregations
            and not odfv.write_to_online_store)


def _on_demand(projection: Any, odfv: Any, read: OnlineRead, rows: list[dict[str, Any]]) -> dict[str, list]:
    """The view's requested outputs, named `<view>__<feature>` as in Feast's full feature names."""
    inputs: dict[str, list[Any]] = {}
    for source in odfv.source_feature_view_projections.values():
        for f in source.features:
            inputs[f"{source.name}__{f.name}"] = read.column(f"{source.name}__{f.name}")
    for request in odfv.source_request_sources.values():
        for f in request.schema:
            inputs[f.name] = [row[f.name] for row in rows]
    outputs = odfv.transform_dict(inputs)
    prefix = projection.name_to_use()
    return {f"{prefix}__{f.name}": outputs[f.name] for f in projection.features}


# --- helpers -------------------------------------------------------------------------------------


def _repo_and_yaml(settings: Settings) -> tuple[Path, Path]:
    repo = Path(settings.feast_repo).resolve()
    yaml_file = Path(settings.feast_yaml).resolve()
    if not yaml_file.is_file():
        raise SettingsError(
            f"Feast configuration {yaml_file} not found (settings feast_yaml / GLUE_FEAST_YAML, "
            f"profile '{settings.profile}')"
        )
    return repo, yaml_file


def _check_env_refs(yaml_file: Path) -> None:
    """Feast leaves an unset ${VAR} in place and fails later, far from the cause: fail here."""
    text = "\n".join(line.split("#", 1)[0] for line in yaml_file.read_text().splitlines())  # no comments
    missing = sorted({a or b for a, b in _ENV_REF.findall(text) if (a or b) not in os.environ})
    if missing:
        raise SettingsError(
            f"{yaml_file}: uses environment variable(s) {', '.join(missing)} that are not set"
        )


def _make_local_dirs(config: Any, repo: Path) -> None:
    """Create the folders of a file registry and a SQLite online store (Feast expects them)."""
    paths = []
    registry = config.registry
    if getattr(registry, "registry_type", "file") == "file" and "://" not in str(registry.path):
        paths.append(Path(registry.path))
    if config.online_store.type == "sqlite":
        paths.append(Path(config.online_store.path))
    for path in paths:
        (path if path.is_absolute() else repo / path).parent.mkdir(parents=True, exist_ok=True)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Readers never see a half-written file (glue/atomic.py)."""
    atomic.write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


def _drop_feasts_warning_filters() -> None:
    """Undo what importing Feast does to the process: its modules call
    `warnings.simplefilter("once", DeprecationWarning | RuntimeWarning)`, which goes in front of the
    application's own filters (glue's CLI keeps the tools' deprecation chatter off the terminal)."""
    warnings.filters[:] = [f for f in warnings.filters
                           if not (f[0] == "once" and f[1] is None and f[3] is None and f[4] == 0
                                   and f[2] in (DeprecationWarning, RuntimeWarning))]


@contextlib.contextmanager
def _inside_repo(repo: Path) -> Iterator[None]:
    """Run Feast's repo parser as the CLI does: from the repo dir, with it importable.

    The repo's modules are imported by their file names; drop earlier copies (another project's
    repo in the same process) so the files on disk are what gets applied.
    """
    names = [p.stem for p in repo.glob("*.py")]
    for name in names:
        sys.modules.pop(name, None)
    old_cwd = Path.cwd()
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo))


def _service(store: FeatureStore, name: str) -> Any:
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        raise GlueError(
            f"feature service '{name}' (params.yaml models.<name>.feature_service) is not registered in "
            f"project '{store.config.project}'; run `glue features` (feast apply) first"
        ) from None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

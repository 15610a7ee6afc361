"""The main job per stage at 100k / 1M (/ 10M) transactions, and each Feast offline store's
point-in-time build on the same rows, side by side: wall time and peak RSS.

Targets (issue 13): `glue run` at 1M transactions in under 5 minutes with every stage under 6 GB
peak RSS; at 10M it completes on 2 cores / 24 GB (aim: under 45 minutes); the prod offline store
within 2x of local at 100k.

Per size, a scratch project (the configuration of this one, as tests/conftest.py clone_project
copies it: a git + DVC repo, no data, no stores) whose params.yaml `demo:` is scaled: 60 days,
size/60 transactions a day, size/20 customers, size/250 merchants (the demo's own 1700/day, 5000
customers, 400 merchants is ~100k). Every stage of the main job (`glue run` = `dvc repro`, then
`dvc push`) runs by itself, in dvc.yaml's order (`dvc stage list`), as `dvc repro --single-item
<stage>`; then the two stages of the loop outside dvc.yaml, `glue score-batch` and `glue monitor`.
Each runs under GNU `/usr/bin/time -v`: wall seconds, and "Maximum resident set size" (the largest
single process of the stage, the glue command DVC starts included). The code run is this work
tree's glue (installed editable); the environment is the `local` profile with nothing inherited
(GLUE_*, FEAST_* and MLFLOW_* unset but GLUE_POSTGRES_* and GLUE_RAY_*). A failed stage stops
the stages after it; batch scoring and monitoring run whatever the other did.

After the stages, the fraud model's (--model) entity rows (its labelled events with the service's
join keys and request fields, as `glue train` builds them) go through glue's point-in-time join
(glue/features.py ``_join_features`` -> Feast ``get_historical_features``) once per offline store,
one process each (so the RSS is per store); "seconds" is the join alone, "wall" the whole process:

- duckdb: Feast's DuckDB store, the local and prod profile's (feature_repo/feature_store.yaml);
- file: Feast's file (Dask) store; it was killed by the OOM killer at 23.9 GB at 1M rows, so it runs
  only up to 100k unless --force-file;
- postgres: Feast's PostgreSQL store, in a throw-away database glue_bench_<random> (dropped after,
  on failure too); the snapshot tables (data/features/*.parquet) are COPYed in with an index on
  (join keys, event_timestamp), and the repo is applied to a registry of its own with each
  FileSource of those tables swapped for a PostgreSQLSource (benchmark-only: the project's
  definitions use FileSource on every profile). The load is timed apart;
- ray: Feast's Ray store, when the project has a Ray profile (`glue ray start|stop`,
  feature_repo/ray/feature_store.yaml): its offline store on a cluster `glue ray start` launches
  for this run (a free GLUE_RAY_PORT unless set; GLUE_RAY_* size it), with a file registry and
  SQLite online store in the scratch dir instead of the profile's prod services; RSS is the
  driver's (Ray's workers are the cluster's processes).

Every store's frame is compared with duckdb's (sorted the same way, NaN-aware, every column).
The tables give each size side by side and the growth between the two largest sizes run, in
seconds and GB per million transactions; --json writes every number for the README, and the
figures benchmarks/run_all.py tabulates (the main job against its targets, DuckDB's join beside
each other store's). --pit-timeout stops a store's join that takes longer (Ray's, on two cores).

A size takes about 3 GB of disk per million transactions (data, DVC cache and remote, MLflow
artifacts), freed after it unless --keep. Develop at small sizes (--sizes 20000).

    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000] [--with-10m] [--model fraud-detector]
                                         [--stores duckdb,file,postgres,ray] [--force-file]
                                         [--pit-timeout SECONDS] [--json PATH] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import figure, write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0], and benchmarks/monitoring.py would shadow the
# `monitoring` package that glue.settings imports (in the worker processes).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
BIN = PROJECT_DIR / ".venv" / "bin"
GNU_TIME = "/usr/bin/time"
DEFAULT_SIZES = "100000,1000000"
TEN_MILLION = 10_000_000
STORES = ("duckdb", "file", "postgres", "ray")
FILE_STORE_LIMIT = 100_000  # above it Feast's file store ran out of 24 GB (issue 13)
FILE_STORE_SKIPPED = "skipped (OOM at 1M: 23.9 GB)"
DAYS = 60
MAIN_JOB = "glue run (sum, peak)"
KEPT_ENV = ("GLUE_POSTGRES_", "GLUE_RAY_")  # the machine's PostgreSQL; the Ray cluster's size and place
AFTER_JOB = ("score-batch", "monitor")  # the loop's stages outside dvc.yaml; neither needs the other
WORKERS = ("entities", "load-postgres", "pit", "compare")
ENTITY_ROWS = "entity_rows"  # the key of the PIT results that holds the rows joined, not a store
MAIN_JOB_SECONDS = {1_000_000: 300.0, TEN_MILLION: 2700.0}  # issue 13: 5 min at 1M, aim 45 min at 10M
STAGE_GB, STAGE_GB_UP_TO = 6.0, 1_000_000  # every stage under 6 GB peak RSS at 1M (and below)


@dataclass
class Measure:
    """One process (tree) under /usr/bin/time -v."""

    seconds: float
    rss_gb: float
    ok: bool
    note: str = ""


# --- the scratch project -------------------------------------------------------------------------


def demo_for(size: int) -> dict[str, int]:
    """The demo generator's scaled `demo:` keys for about `size` transactions."""
    return {"days": DAYS, "transactions_per_day": round(size / DAYS), "customers": max(1, size // 20),
            "merchants": max(1, size // 250)}


def make_project(root: Path, demo: dict[str, int]) -> Path:
    """A fresh clone of this project's configuration in `root` (git + DVC, no data), demo scaled:
    the same copy the e2e tests make (tests/conftest.py clone_project)."""
    from tests.conftest import clone_project

    root.parent.mkdir(parents=True, exist_ok=True)
    return clone_project(root, demo)


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """The scratch project's environment: the local profile, this venv first, nothing inherited."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GLUE_", "FEAST_", "MLFLOW_")) or k.startswith(KEPT_ENV)}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", GLUE_PROJECT_DIR=str(project),
               GLUE_PROFILE="local", GX_ANALYTICS_ENABLED="false", TQDM_DISABLE="1", **extra)
    return env


def main_job_stages(project: Path, env: dict[str, str]) -> list[str]:
    """The stages of `dvc repro`, in dvc.yaml's order (train@<model>... for every model)."""
    out = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=project, env=env,
                         capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


# --- measuring -----------------------------------------------------------------------------------


def timed(argv: list[str], cwd: Path, env: dict[str, str], log: Path,
          timeout: float | None = None) -> Measure:
    """Run argv under GNU time -v; its output and errors go to `log`; stopped after `timeout` s."""
    report = log.with_suffix(".time")
    start = time.perf_counter()
    timed_out = False
    with log.open("w") as out:
        # its own process group: interrupted, the whole stage goes (not only GNU time)
        process = subprocess.Popen([GNU_TIME, "-v", "-o", str(report), *argv], cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
    completed = process
    seconds = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report.read_text()) \
        if report.exists() else None
    rss_gb = int(match.group(1)) / 1024**2 if match else float("nan")
    note = ""
    if completed.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        killed = "signal 9" in (report.read_text() if report.exists() else "")
        note = (f"exit {completed.returncode}" + (" (killed: OOM?)" if killed else "")
                + (": " + " | ".join(tail)[-300:] if tail else ""))
        if timed_out:
            note = f"stopped after {timeout:.0f} s (--pit-timeout)"
    return Measure(seconds=seconds, rss_gb=rss_gb, ok=completed.returncode == 0, note=note)


def worker(mode: str, project: Path, env: dict[str, str], log: Path, timeout: float | None = None,
           **options: str) -> Measure:
    """This script as a worker process (see `run_worker`), measured."""
    argv = [str(BIN / "python"), str(Path(__file__).resolve()), "--worker", mode, "--project", str(project)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return timed(argv, project, env, log, timeout)


# --- the main job --------------------------------------------------------------------------------


def run_stages(project: Path, env: dict[str, str], logs: Path) -> dict[str, Measure]:
    """Every stage of the main job, one by one, then batch scoring and monitoring."""
    steps = [(stage, [str(BIN / "dvc"), "repro", "--single-item", stage])
             for stage in main_job_stages(project, env)]
    steps += [("push", [str(BIN / "dvc"), "push", "--quiet"]),
              ("score-batch", [str(BIN / "glue"), "score-batch"]),
              ("monitor", [str(BIN / "glue"), "monitor"])]
    results: dict[str, Measure] = {}
    failed = None
    for name, argv in steps:
        if failed is not None:
            results[name] = Measure(float("nan"), float("nan"), False, f"not run ({failed} failed)")
        else:
            results[name] = timed(argv, project, env, logs / f"{name.replace('@', '_')}.log")
            if not results[name].ok and name not in AFTER_JOB:  # the later stages need it
                failed = name
        m = results[name]
        print(f"    {name:<28} {m.seconds:>8.1f} s  {m.rss_gb:>6.2f} GB  {m.note}", flush=True)
    return results


# --- point-in-time builds per offline store ------------------------------------------------------


def run_pit(project: Path, env: dict[str, str], bench: Path, size: int, stores: list[str], model: str,
            force_file: bool, timeout: float | None = None) -> dict[str, Any]:
    """The model's entity rows through each store's point-in-time join; frames compared with duckdb's."""
    results: dict[str, Any] = {}
    entities = bench / "entities.parquet"
    prep = worker("entities", project, env, bench / "entities.log", model=model, out=str(entities))
    if not prep.ok:
        print(f"    entity rows failed: {prep.note}")
        return {s: {"status": f"not run (entity rows failed: {prep.note})"} for s in stores}
    rows = json.loads(entities.with_suffix(".json").read_text())["rows"]
    results[ENTITY_ROWS] = {"rows": rows, "seconds": prep.seconds, "rss_gb": prep.rss_gb}
    print(f"    entity rows of {model}: {rows} ({prep.seconds:.1f} s)", flush=True)
    frames: dict[str, Path] = {}
    for store in stores:
        out = bench / f"pit_{store}.parquet"
        try:
            with store_config(store, project, env, bench, size, force_file) as (yaml_file, store_env, extra):
                if yaml_file is None:
                    results[store] = extra if isinstance(extra, dict) else {"status": extra}
                    print(f"    {store:<9} {results[store]['status']}", flush=True)
                    continue
                m = worker("pit", project, store_env, bench / f"pit_{store}.log", timeout, model=model,
                           entities=str(entities), out=str(out))
                result: dict[str, Any] = {"wall_seconds": m.seconds, "rss_gb": m.rss_gb,
                                          "status": "ok" if m.ok else m.note, **(extra or {})}
                if m.ok:
                    result["seconds"] = json.loads(out.with_suffix(".json").read_text())["seconds"]
                    frames[store] = out
                results[store] = result
                print(f"    {store:<9} {fmt(result.get('seconds', float('nan'))):>8} s join  "
                      f"{m.seconds:>8.1f} s wall  {m.rss_gb:>6.2f} GB  {'' if m.ok else m.note}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a store that cannot be set up is reported, the rest still run
            results[store] = {"status": f"failed: {type(exc).__name__}: {exc}"[:300]}
            print(f"    {store:<9} {results[store]['status']}", flush=True)
    reference = "duckdb" if "duckdb" in frames else next(iter(frames), None)
    for store, path in frames.items():
        if store == reference:
            results[store]["same_frame"] = "reference"
            continue
        report = bench / f"same_{store}.json"
        m = worker("compare", project, env, bench / f"same_{store}.log", left=str(frames[reference]),
                   right=str(path), out=str(report))
        same = json.loads(report.read_text()) if m.ok else {"same": False, "detail": m.note}
        results[store]["same_frame"] = "yes" if same["same"] else f"no: {same['detail']}"
        results[store]["compared_with"] = reference
    if not os.environ.get("SCALE_KEEP_FRAMES"):
        for path in frames.values():
            path.unlink(missing_ok=True)
    return results


@contextlib.contextmanager
def store_config(store: str, project: Path, env: dict[str, str], bench: Path, size: int,
                 force_file: bool) -> Iterator[tuple[Path | None, dict[str, str], Any]]:
    """The feature_store.yaml and environment of one offline store, set up and torn down around its run."""
    import yaml

    local_yaml = project / "feature_repo" / "feature_store.yaml"
    if store == "duckdb":
        yield local_yaml, project_env(project, GLUE_FEAST_YAML=str(local_yaml)), None
    elif store == "file":
        if size > FILE_STORE_LIMIT and not force_file:
            yield None, env, FILE_STORE_SKIPPED
            return
        config = yaml.safe_load(local_yaml.read_text())
        config = _absolute_paths(config, local_yaml.parent)
        config["offline_store"] = {"type": "file"}
        path = bench / "file" / "feature_store.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        yield path, project_env(project, GLUE_FEAST_YAML=str(path)), None
    elif store == "postgres":
        with throwaway_database() as (database, pg):
            config = {
                "project": yaml.safe_load(local_yaml.read_text())["project"],
                "provider": "local",
                "registry": str(bench / "postgres" / "registry.db"),
                "offline_store": {"type": "postgres", "host": pg["host"], "port": pg["port"],
                                  "database": database, "db_schema": "public", "user": pg["user"],
                                  "password": pg["password"], "sslmode": "disable"},
                "online_store": {"type": "sqlite", "path": str(bench / "postgres" / "online_store.db")},
                "entity_key_serialization_version": 3,
                "auth": {"type": "no_auth"},
            }
            path = bench / "postgres" / "feature_store.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            store_env = project_env(project, GLUE_FEAST_YAML=str(path))
            load = worker("load-postgres", project, store_env, bench / "postgres_load.log")
            print(f"    postgres  load + apply: {load.seconds:.1f} s, {load.rss_gb:.2f} GB "
                  f"{'' if load.ok else load.note}", flush=True)
            extra = {"load_seconds": load.seconds, "load_rss_gb": load.rss_gb}
            if not load.ok:
                yield None, env, {"status": f"load failed: {load.note}", **extra}
            else:
                yield path, store_env, extra
    elif store == "ray":
        ray_yaml = project / "feature_repo" / "ray" / "feature_store.yaml"
        has_command = subprocess.run([str(BIN / "glue"), "ray", "--help"], env=env, cwd=project,
                                     capture_output=True).returncode == 0
        if not has_command or not ray_yaml.is_file():
            yield None, env, "n/a (no ray profile)"
            return
        # The profile's offline store and engine on a cluster of this run's own (a free port unless
        # GLUE_RAY_* says otherwise); its registry and online store are files in the scratch dir,
        # not the prod services the profile shares.
        port = {} if os.environ.get("GLUE_RAY_PORT") else {"GLUE_RAY_PORT": free_port()}
        ray_env = project_env(project, **port)
        config = _absolute_paths(yaml.safe_load(ray_yaml.read_text()), ray_yaml.parent)
        config["registry"] = str(bench / "ray" / "registry.db")
        config["online_store"] = {"type": "sqlite", "path": str(bench / "ray" / "online_store.db")}
        path = bench / "ray" / "feature_store.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        start = timed([str(BIN / "glue"), "ray", "start"], project, ray_env, bench / "ray_start.log")
        try:
            if not start.ok:
                yield None, env, f"glue ray start failed: {start.note}"
                return
            yield path, {**ray_env, "GLUE_FEAST_YAML": str(path)}, {"cluster_start_seconds": start.seconds}
        finally:
            timed([str(BIN / "glue"), "ray", "stop"], project, ray_env, bench / "ray_stop.log")
    else:
        raise SystemExit(f"unknown store {store!r} (choose from {', '.join(STORES)})")


def free_port(host: str = "127.0.0.2") -> str:
    """A port on `host` that is free, and its successor too (the Ray client server's)."""
    import random
    import socket

    for _ in range(100):
        port = random.randint(20000, 40000)
        try:
            for p in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind((host, p))
        except OSError:
            continue
        return str(port)
    raise RuntimeError(f"no free port pair on {host}")


def _absolute_paths(config: dict, repo: Path) -> dict:
    """A feature_store.yaml moved out of its repo: its registry and SQLite paths made absolute."""
    def absolute(value: str) -> str:
        return value if "://" in value or Path(value).is_absolute() else str((repo / value).resolve())

    if isinstance(config.get("registry"), str):
        config["registry"] = absolute(config["registry"])
    elif isinstance(config.get("registry"), dict) and "path" in config["registry"]:
        config["registry"]["path"] = absolute(config["registry"]["path"])
    online = config.get("online_store") or {}
    if online.get("type") == "sqlite" and "path" in online:
        online["path"] = absolute(online["path"])
    offline = config.get("offline_store") or {}
    if "storage_path" in offline:
        offline["storage_path"] = absolute(offline["storage_path"])
    return config


def postgres_settings() -> dict[str, Any]:
    """The machine's PostgreSQL, as glue's settings read it (GLUE_POSTGRES_*)."""
    return {"host": os.environ.get("GLUE_POSTGRES_HOST", "127.0.0.1"),
            "port": int(os.environ.get("GLUE_POSTGRES_PORT", "5432")),
            "user": os.environ.get("GLUE_POSTGRES_USER", "postgres"),
            "password": os.environ.get("GLUE_POSTGRES_PASSWORD", "")}


@contextlib.contextmanager
def throwaway_database() -> Iterator[tuple[str, dict[str, Any]]]:
    """A new empty database glue_bench_<random>, dropped afterwards whatever happens."""
    import psycopg

    pg = postgres_settings()
    name = f"glue_bench_{uuid.uuid4().hex[:10]}"

    def connect() -> Any:
        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, host=pg["host"],
                               port=pg["port"], user=pg["user"], password=pg["password"] or None)

    with connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, pg
    finally:
        with connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- worker processes (one per measured step) ----------------------------------------------------


def run_worker(args: argparse.Namespace) -> None:
    """One measured step in its own process (GLUE_PROJECT_DIR and GLUE_FEAST_YAML select the store)."""
    import sklearn.ensemble  # noqa: F401 - before Feast (prometheus and OpenMP load order as the CLI has it)

    from glue.settings import get_settings

    settings = get_settings()
    if args.worker == "entities":
        write_entities(settings, args.model, Path(args.out))
    elif args.worker == "load-postgres":
        load_postgres(settings)
    elif args.worker == "pit":
        join(settings, args.model, Path(args.entities), Path(args.out))
    elif args.worker == "compare":
        compare(Path(args.left), Path(args.right), Path(args.out))


def write_entities(settings: Any, model_name: str, out: Path) -> None:
    """The model's entity rows as `glue train` builds them (glue.features.training_frame), to parquet."""
    from glue import features
    from glue.adapters import feast

    model = settings.model(model_name)
    store = feast.open_store(settings)
    inputs = feast.service_inputs(store, model.feature_service)
    labels = features.read_label_rows(settings, model, store)
    rows = features._with_service_inputs(settings, model, inputs, labels)
    own = (features.EVENT_TIMESTAMP, features.KNOWN_AT, model.label.field)
    keys = [c for c in labels.columns if c not in own and c not in features._input_columns(inputs)]
    extra = [*keys, model.label.field]
    columns = list(dict.fromkeys([*features._input_columns(inputs), *extra]))
    rows[columns].to_parquet(out, index=False)
    out.with_suffix(".json").write_text(json.dumps({"rows": len(rows), "extra": extra}))


def join(settings: Any, model_name: str, entities: Path, out: Path) -> None:
    """glue's point-in-time join (features._join_features) on the store of GLUE_FEAST_YAML, timed."""
    import pandas as pd

    from glue import features
    from glue.adapters import feast
    from glue.errors import GlueError

    model = settings.model(model_name)
    rows = pd.read_parquet(entities)
    extra = json.loads(entities.with_suffix(".json").read_text())["extra"]
    store = feast.open_store(settings)
    try:
        inputs = feast.service_inputs(store, model.feature_service)
    except GlueError:  # a store with a registry of its own, not applied yet (the Ray profile's)
        feast.apply_repo(settings, store)
        inputs = feast.service_inputs(store, model.feature_service)
    start = time.perf_counter()
    joined = features._join_features(settings, store, inputs, rows, extra=extra)
    seconds = time.perf_counter() - start
    joined.to_parquet(out, index=False)
    out.with_suffix(".json").write_text(json.dumps({"seconds": seconds, "rows": len(joined),
                                                    "store": store.config.offline_store.type}))


def load_postgres(settings: Any) -> None:
    """The snapshot tables into the store's database (COPY, index on join keys + event time), and the
    repo applied with their FileSources swapped for PostgreSQLSources (benchmark-only)."""
    import pandas as pd
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    from glue.adapters import feast

    store = feast.open_store(settings)
    contents = feast.repo_contents(settings, store)
    features_dir = Path(settings.features_dir).resolve()
    swapped = {}
    for source in contents.data_sources:
        if type(source).__name__ != "FileSource" or Path(source.path).resolve().parent != features_dir:
            continue  # the labels: glue reads them itself, not through the offline store
        table = Path(source.path).stem
        keys = sorted({c.name for fv in contents.feature_views if fv.batch_source.name == source.name
                       for c in fv.entity_columns})
        timestamp = source.timestamp_field
        copy_table(store.config.offline_store, table, pd.read_parquet(source.path), keys, timestamp)
        swapped[source.name] = PostgreSQLSource(name=source.name, table=table, timestamp_field=timestamp,
                                                description=source.description)
    contents.data_sources[:] = [swapped.get(s.name, s) for s in contents.data_sources]
    for fv in contents.feature_views:
        if fv.batch_source is not None and fv.batch_source.name in swapped:
            fv.batch_source = swapped[fv.batch_source.name]
            if getattr(fv, "data_source", None) is not None:
                fv.data_source = fv.batch_source
    feast.apply_repo(settings, store, contents)


def copy_table(cfg: Any, table: str, df: Any, keys: list[str], timestamp: str) -> None:
    """One table into PostgreSQL: its schema by pandas, its rows by COPY, then the PIT join's index."""
    import io

    import psycopg
    import sqlalchemy

    url = sqlalchemy.engine.URL.create("postgresql+psycopg", username=cfg.user, password=cfg.password or None,
                                       host=cfg.host, port=cfg.port, database=cfg.database)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            df.head(0).to_sql(table, conn, schema=cfg.db_schema, if_exists="replace", index=False)
    finally:
        engine.dispose()
    with psycopg.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password or None,
                         dbname=cfg.database) as conn:
        columns = ", ".join(f'"{c}"' for c in df.columns)
        with conn.cursor() as cur, cur.copy(f'COPY "{cfg.db_schema}"."{table}" ({columns}) FROM STDIN '
                                            "WITH (FORMAT csv)") as copy:
            for start in range(0, len(df), 200_000):
                buffer = io.StringIO()
                df.iloc[start:start + 200_000].to_csv(buffer, index=False, header=False, na_rep="",
                                                      date_format="%Y-%m-%d %H:%M:%S.%f%z")
                copy.write(buffer.getvalue())
        index = ", ".join(f'"{c}"' for c in (*keys, timestamp))
        conn.execute(f'CREATE INDEX ON "{cfg.db_schema}"."{table}" ({index})')
        conn.execute(f'ANALYZE "{cfg.db_schema}"."{table}"')


def compare(left: Path, right: Path, out: Path) -> None:
    """Whether two PIT frames are the same: same columns and rows, every value equal (NaN = NaN)."""
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(left), pd.read_parquet(right)
    detail = []
    if sorted(a.columns) != sorted(b.columns):
        detail.append(f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}")
    if len(a) != len(b):
        detail.append(f"rows {len(a)} vs {len(b)}")
    if not detail:
        order = [c for c in a.columns if not pd.api.types.is_float_dtype(a[c])]
        a = a.sort_values(order, kind="stable").reset_index(drop=True)
        b = b[a.columns].sort_values(order, kind="stable").reset_index(drop=True)
        differ = []
        for column in a.columns:
            x, y = a[column], b[column]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) \
                    and not pd.api.types.is_bool_dtype(x):
                xs, ys = (v.to_numpy("float64", na_value=np.nan) for v in (x, y))
                equal = np.allclose(xs, ys, rtol=1e-9, atol=0.0, equal_nan=True)
            else:
                equal = bool(((x == y) | (x.isna() & y.isna())).all())
            times = pd.api.types.is_datetime64_any_dtype(x) and pd.api.types.is_datetime64_any_dtype(y)
            if not equal and times:
                column += f" (by up to {(x - y).abs().max().total_seconds():.3f} s)"
            if not equal:
                differ.append(column)
        if differ:
            detail.append(f"{len(differ)} of {len(a.columns)} columns differ: {', '.join(differ[:5])}")
    out.write_text(json.dumps({"same": not detail, "detail": "; ".join(detail)}))


# --- the report ----------------------------------------------------------------------------------


def growth(values: dict[int, float]) -> float:
    """Per million transactions, between the two largest sizes with a value."""
    ok = sorted((n, v) for n, v in values.items() if v == v)
    if len(ok) < 2:
        return float("nan")
    (n1, v1), (n2, v2) = ok[-2], ok[-1]
    return (v2 - v1) / ((n2 - n1) / 1e6)


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def print_stage_table(stages: dict[int, dict[str, Measure]]) -> dict[str, Any]:
    """Stage x size: seconds and peak RSS; the main job's sum; growth per million transactions."""
    sizes = sorted(stages)
    names = list(dict.fromkeys(name for size in sizes for name in stages[size]))
    main_job = [n for n in names if n not in AFTER_JOB]
    header = f"{'stage':<24}" + "".join(f"{f'{size:,} s':>14}{'GB':>7}" for size in sizes)
    if len(sizes) > 1:
        header += f"{'s/M':>9}{'GB/M':>7}"
    print(header)
    rows: dict[str, Any] = {}

    def line(name: str, per_size: dict[int, Measure | None]) -> None:
        text = f"{name:<24}"
        for size in sizes:
            m = per_size.get(size)
            text += f"{fmt(m.seconds) if m else '-':>14}{fmt(m.rss_gb, 2) if m else '-':>7}" if m and m.ok \
                else f"{'failed' if m and m.note and not m.note.startswith('not run') else '-':>14}{'':>7}"
        s_growth = growth({s: m.seconds for s, m in per_size.items() if m and m.ok})
        gb_growth = growth({s: m.rss_gb for s, m in per_size.items() if m and m.ok})
        if len(sizes) > 1:
            text += f"{fmt(s_growth, 2):>9}{fmt(gb_growth, 3):>7}"
        rows[name] = {"seconds_per_million": s_growth, "gb_per_million": gb_growth}
        print(text)

    for name in names:
        line(name, {size: stages[size].get(name) for size in sizes})
    totals = {}
    for size in sizes:
        ms = [stages[size][n] for n in main_job if n in stages[size]]
        ok = all(m.ok for m in ms)
        totals[size] = Measure(sum(m.seconds for m in ms), max(m.rss_gb for m in ms), ok,
                               "" if ok else "failed")
    line(MAIN_JOB, totals)
    for size in sizes:
        for name, m in stages[size].items():
            if not m.ok and not m.note.startswith("not run"):
                print(f"  {size:,}: {name} failed: {m.note}")
    rows[MAIN_JOB]["totals"] = {size: asdict(m) for size, m in totals.items()}
    return rows


def print_pit_table(pit: dict[int, dict[str, Any]], stores: list[str]) -> dict[str, Any]:
    """Store x size: join seconds, process peak RSS, ratio to duckdb, same frame."""
    sizes = sorted(pit)
    print(f"{'store':<10}{'transactions':>13}{'rows':>11}{'join s':>9}{'wall s':>9}{'GB':>7}{'x duckdb':>10}"
          "  same frame")
    growth_rows = {}
    for store in stores:
        for size in sizes:
            r = pit[size].get(store, {})
            ref = pit[size].get("duckdb", {})
            rows = pit[size].get(ENTITY_ROWS, {}).get("rows")
            rows = f"{rows:>11,}" if rows else f"{'-':>11}"
            if "seconds" not in r:
                print(f"{store:<10}{size:>13,}{rows}  {str(r.get('status', '-'))[:160]}")
                continue
            ratio = r["seconds"] / ref["seconds"] if ref.get("seconds") else float("nan")
            r["ratio_to_duckdb"] = ratio
            extra = (f"  (load + apply {r['load_seconds']:.1f} s, {r['load_rss_gb']:.2f} GB)"
                     if "load_seconds" in r else "")
            print(f"{store:<10}{size:>13,}{rows}{r['seconds']:>9.1f}{r['wall_seconds']:>9.1f}{r['rss_gb']:>7.2f}"
                  f"{fmt(ratio, 2):>10}  {r.get('same_frame', '-')}{extra}")
        per_s = growth({s: pit[s][store]["seconds"] for s in sizes if "seconds" in pit[s].get(store, {})})
        per_gb = growth({s: pit[s][store]["rss_gb"] for s in sizes if "seconds" in pit[s].get(store, {})})
        growth_rows[store] = {"seconds_per_million": per_s, "gb_per_million": per_gb}
    if len(sizes) > 1:
        print("growth between the two largest sizes run, per million transactions:")
        for store, g in growth_rows.items():
            if g["seconds_per_million"] == g["seconds_per_million"]:
                print(f"  {store:<9} {g['seconds_per_million']:.2f} s/M  {g['gb_per_million']:.3f} GB/M")
    return growth_rows


def figures(stages: dict[int, dict[str, Measure]], pit: dict[int, dict[str, Any]],
            stores: list[str]) -> list[dict[str, Any]]:
    """Per size: the main job against its targets, the stages after it, DuckDB's join beside each store's."""
    out = []
    for size in sorted(stages):
        per = stages[size]
        job = {name: m for name, m in per.items() if name not in AFTER_JOB}
        failed = [name for name, m in job.items() if not m.ok]
        limit = MAIN_JOB_SECONDS.get(size)
        note = f"failed: {failed[0]}: {job[failed[0]].note}" if failed else f"{len(job)} stages"
        out.append(figure(f"glue run (sum of stages), {size:,} tx", None if failed else
                          sum(m.seconds for m in job.values()), "s", limit=("<", limit) if limit else None,
                          passed=False if failed else None, note=note))
        peak = max((m.rss_gb for m in job.values() if m.ok), default=None)
        out.append(figure(f"glue run peak RSS, {size:,} tx", peak, "GB",
                          limit=("<", STAGE_GB) if size <= STAGE_GB_UP_TO else None,
                          note="the largest single process of any stage"))
        for name in AFTER_JOB:
            m = per.get(name)
            if m is not None:
                out.append(figure(f"{name}, {size:,} tx", m.seconds if m.ok else None, "s",
                                  passed=None if m.ok else False,
                                  note=f"{m.rss_gb:.2f} GB" if m.ok else m.note))
        joins = pit.get(size, {})
        duck = joins.get("duckdb", {})
        rows = joins.get(ENTITY_ROWS, {}).get("rows")
        name = f"PIT join, duckdb (glue's store), {size:,} tx"
        if "duckdb" in stores:
            out.append(figure(name, duck.get("seconds"), "s", passed=None if "seconds" in duck else False,
                              note=(f"{rows:,} rows, {duck['rss_gb']:.2f} GB" if "seconds" in duck and rows
                                    else str(duck.get("status", "-")))))
        for store in stores:
            if store == "duckdb":
                continue
            r = joins.get(store, {})
            status = str(r.get("status", "-"))
            if "seconds" in r:
                note = f"{store}: {r['rss_gb']:.2f} GB, same frame: {r.get('same_frame', '-')}"
                if "load_seconds" in r:
                    note += f"; + {r['load_seconds']:.1f} s to load the tables"
            else:
                note = status
            broken = "seconds" not in r and status.startswith(("failed", "load failed", "glue ray start",
                                                               "exit"))
            out.append(figure(name, duck.get("seconds"), "s", peer=f"{store} store",
                              peer_value=r.get("seconds"), passed=False if broken else None, note=note))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated ({DEFAULT_SIZES})")
    parser.add_argument("--with-10m", action="store_true", help="add 10,000,000 transactions")
    parser.add_argument("--stores", default=",".join(STORES), help="offline stores for the PIT build")
    parser.add_argument("--force-file", action="store_true",
                        help=f"run Feast's file store above {FILE_STORE_LIMIT:,} rows too (OOM at 1M)")
    parser.add_argument("--model", default="fraud-detector", help="whose entity rows the PIT builds use")
    parser.add_argument("--pit-timeout", type=float, metavar="SECONDS",
                        help="stop a store's point-in-time join after this long (default: never)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--workdir", type=Path, help="where the scratch projects go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    for hidden in ("--project", "--entities", "--out", "--left", "--right"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    # SIGTERM unwinds like Ctrl-C: the throw-away database is dropped, a Ray cluster stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | ({TEN_MILLION} if args.with_10m else set()))
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        parser.error(f"unknown store(s) {', '.join(unknown)} (choose from {', '.join(STORES)})")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glue-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{platform.node()}: {os.cpu_count()} cores, {_memory_gb():.0f} GB; scratch projects in {workdir}")
    stages: dict[int, dict[str, Measure]] = {}
    pit: dict[int, dict[str, Any]] = {}
    for size in sizes:
        demo = demo_for(size)
        print(f"\n== {size:,} transactions (demo {demo}) ==", flush=True)
        root = workdir / f"{size}"
        if root.exists():
            shutil.rmtree(root)
        project = make_project(root / "project", demo)
        bench = root / "bench"
        bench.mkdir()
        env = project_env(project)
        try:
            stages[size] = run_stages(project, env, bench)
            if stages[size].get("features", Measure(0, 0, False)).ok:
                pit[size] = run_pit(project, env, bench, size, stores, args.model, args.force_file,
                                    args.pit_timeout)
            else:
                pit[size] = {s: {"status": "not run (features failed)"} for s in stores}
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)

    print("\nthe main job per stage (wall seconds, peak RSS GB of the stage's largest process; "
          "s/M and GB/M: growth per million transactions between the two largest sizes)")
    stage_growth = print_stage_table(stages)
    print(f"\npoint-in-time build of {args.model}'s training rows per offline store (join seconds; wall and "
          "GB of the whole process)")
    pit_growth = print_pit_table(pit, stores)
    if args.json:
        write_json(args.json, figures(stages, pit, stores),
                   machine={"host": platform.node(), "cores": os.cpu_count(), "memory_gb": _memory_gb()},
                   versions=_versions(), sizes={size: demo_for(size) for size in sizes},
                   stages={size: {n: asdict(m) for n, m in per.items()} for size, per in stages.items()},
                   stage_growth=stage_growth, pit=pit, pit_growth=pit_growth)
        print(f"\nwrote {args.json}")
    if args.keep:
        print(f"kept: {workdir}")
    elif not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def _memory_gb() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("feast", "duckdb", "dvc", "mlflow", "scikit-learn", "pandas", "ray"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


if __name__ == "__main__":
    main()

"""Latency and throughput of `glue serve` (one hop) against feast serve + mlflow models serve (two hops).

One hop: the client POSTs transactions to `glue serve` (``POST /models/<model>/predict`` with
``{"instances": [...]}``), which reads Feast's online store in-process and scores with the
champion it holds in memory. The model is the demo's fraud-detector (--model), whose request carries
the transaction's fields. Two hops: the client asks the Feast
feature server (`feast serve`) for the features, then `mlflow models serve` (models:/<name>@champion,
--env-manager local) for the scores. Each server runs one worker on loopback; every process,
the load generator included, shares the same cores, so the numbers are for the whole host.

Measured for 1 transaction and for 100 transactions per request: p50 / p99 latency of one client
sending requests back to back, and throughput (requests/s and transactions/s) of --concurrency
clients for --seconds. The two stacks must give the same scores; the largest difference is printed.
The floor beside them: the champion's own scikit-learn ``predict_proba``, in this process, on the
feature matrix glue serve gave it for the same rows (read back from its prediction log), the same
batches of 1 and 100; glue serve's scores must equal its.

The project: the current directory if it holds data/ and .glue/ (a built project with a
champion), else a small one prepared in a temporary directory (20 demo days x 1000 transactions,
features materialized to SQLite, every model trained with params.yaml and promoted); --fresh forces
that. The online store is SQLite and Redis (--store), with the same rows; the Redis db (--redis) is
flushed afterwards.

    uv run python benchmarks/serving.py [--fresh] [--model fraud-detector] [--requests 1000]
                                        [--concurrency 4] [--seconds 8] [--workers 1] [--no-two-hop] [--keep]
                                        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from _common import figure, write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0], and benchmarks/monitoring.py would shadow the
# `monitoring` package that glue.settings imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
BIN = Path(sys.executable).parent
LAST_SNAPSHOT_MORNING = "T09:30:00Z"
MODEL = "fraud-detector"  # the demo's model with request fields (customer-spend takes a customer_id alone)
BENCH_DEMO = {"days": 20, "transactions_per_day": 1000, "customers": 3000, "merchants": 200,
              "fraud_rate": 0.03, "label_delay_days": 3}
REQUEST_KEY = ("customer_id", "merchant_id", "amount", "channel", "card_present")  # a row, in the log
TARGET_P50_MS, TARGET_P99_MS, TARGET_THROUGHPUT_RATIO = 3.0, 8.0, 2.0  # issue 5, one transaction


# --- the project ---------------------------------------------------------------------------------------


def prepare_project(root: Path) -> Path:
    """A built project in `root`: demo data, validated, features online, every model's champion promoted."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(PROJECT_DIR / name, root / name)
    shutil.copytree(PROJECT_DIR / "feature_repo", root / "feature_repo",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    os.environ["GLUE_PROJECT_DIR"] = str(root)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import sklearn.ensemble  # noqa: F401 - load the OpenMP runtime before limiting it
    from threadpoolctl import threadpool_limits

    from glue import features, project_code, promotion, training, validation
    from glue.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    generate = project_code.load_callable(settings.params.data.generator or "", settings.project_dir,
                                          "data.generator")
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("demo data", lambda: generate({**settings.params.demo, **BENCH_DEMO}, settings.raw_dir)),
        ("validate", lambda: validation.validate_batches(settings)),
        ("features", lambda: features.build_features(settings)),
    ]
    for model in settings.models:
        steps.append((f"train {model.name}", lambda m=model: training.train(settings, m)))
        steps.append((f"promote {model.name}", lambda m=model: promotion.evaluate_and_promote(settings, m)))
    with threadpool_limits(limits=1, user_api="openmp"):  # small fits: OpenMP threads only wait
        for name, step in steps:
            start = time.perf_counter()
            step()
            print(f"  {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return root


def champion_info(root: Path, name: str) -> tuple[str, list[str], str]:
    """(champion version, its feature columns, tracking URI) of model `name` of the project."""
    os.environ["GLUE_PROJECT_DIR"] = str(root)
    from glue import contract
    from glue.adapters import mlflow
    from glue.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    mlflow.configure(settings)
    ref = mlflow.get_alias(name, contract.CHAMPION)
    if ref is None:
        raise SystemExit(f"{root}: model {name} has no champion; run the loop first or use --fresh")
    return ref.version, contract.feature_columns(ref.tags), settings.mlflow_tracking_uri


def sample_transactions(root: Path, n: int) -> list[dict[str, Any]]:
    """Transactions of the last day (their customers and merchants are online), as request rows."""
    from glue.features import read_events
    from glue.settings import get_settings

    tx = read_events(get_settings())
    last = tx["event_timestamp"].dt.floor("D").max()
    now = (last + np.timedelta64(1, "D")).strftime("%Y-%m-%d") + LAST_SNAPSHOT_MORNING
    recent = tx[tx["event_timestamp"] >= last].sample(frac=1.0, random_state=0)
    rows = [{"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
             "merchant_id": int(r.merchant_id), "amount": float(r.amount), "channel": str(r.channel),
             "card_present": bool(r.card_present), "event_timestamp": now}
            for r in recent.itertuples()]
    return [rows[i % len(rows)] for i in range(n)]


# --- the online stores -----------------------------------------------------------------------------------

# Feast 0.67's feature server drops the outputs of python-mode on-demand views from reads with
# full_feature_names=True (which this model's columns need; glue serve computes such views itself).
# The two-hop stack therefore gets the repo a user of `feast serve` would have to write: the same
# view function, wrapped in pandas mode. Appended to a copy of feature_definitions.py, it rebinds
# the view and the service; the printed score difference shows both stacks compute the same.
PANDAS_MODE_OVERRIDE = """

# --- benchmark only (benchmarks/serving.py): the on-demand view in pandas mode, for `feast serve` ---
_python_view = transaction_request_features


@on_demand_feature_view(
    sources=[*_python_view.source_feature_view_projections.values(),
             *_python_view.source_request_sources.values()],
    schema=_python_view.schema,
    mode="pandas",
)
def transaction_request_features(inputs):
    import pandas as pd

{python_function}
    out = _rows({{c: inputs[c].tolist() for c in inputs.columns}})
    return pd.DataFrame(out, index=inputs.index)


del _python_view  # Feast collects every view bound in the module: only the pandas one may remain
fraud_model_v1 = FeatureService(
    name="fraud_model_v1", features=[customer_transactions, merchant_risk, transaction_request_features]
)
"""


def online_store_yaml(kind: str, registry: str, redis: str) -> str:
    """A feature_store.yaml for the benchmark: its own registry, the SQLite or Redis online store."""
    online = ("    type: sqlite\n    path: ../.glue/feast/online_store.db" if kind == "sqlite"
              else f"    type: redis\n    connection_string: {redis}")
    return (f"project: fraud\nprovider: local\nregistry: ../.glue/feast/{registry}\n"
            f"offline_store:\n    type: file\nonline_store:\n{online}\n"
            "entity_key_serialization_version: 3\nauth:\n    type: no_auth\n")


def prepare_stores(root: Path, redis: str, env: dict[str, str]) -> dict[str, tuple[Path, Path]]:
    """Per online store, (glue's feature_store.yaml, the two-hop repo's yaml); Redis materialized.

    glue serve reads the project's repo (python-mode view); `feast serve` reads bench_twohop/, a
    copy with the pandas-mode override. Each yaml has a registry of its own, so the project's
    registry is never changed; SQLite is the project's online store, Redis gets the same rows.
    """
    import textwrap

    from glue.adapters import feast
    from glue.settings import get_settings

    repo = root / "feature_repo"
    twohop = root / "bench_twohop"
    if twohop.exists():
        shutil.rmtree(twohop)
    shutil.copytree(repo, twohop, ignore=shutil.ignore_patterns("__pycache__", "prod", "bench_*.yaml"))
    store = feast.open_store(get_settings())
    python_view = store.get_on_demand_feature_view("transaction_request_features")
    function = textwrap.dedent(python_view.feature_transformation.udf_string)  # the registered source
    lines = function.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))  # drop the decorator
    name = python_view.feature_transformation.udf.__name__
    function = "\n".join(lines[start:]).replace(f"def {name}(", "def _rows(", 1)
    override = PANDAS_MODE_OVERRIDE.format(python_function=textwrap.indent(function, "    "))
    with (twohop / "feature_definitions.py").open("a") as f:
        f.write(override)

    out: dict[str, tuple[Path, Path]] = {}
    for kind in ("sqlite", "redis"):
        glue_yaml = repo / f"bench_{kind}.yaml"
        twohop_yaml = twohop / f"bench_{kind}.yaml"
        glue_yaml.write_text(online_store_yaml(kind, f"registry_bench_{kind}.db", redis))
        twohop_yaml.write_text(online_store_yaml(kind, f"registry_bench_twohop_{kind}.db", redis))
        for folder, yaml_file in ((repo, glue_yaml), (twohop, twohop_yaml)):
            run(f"feast apply ({folder.name}, {kind})",
                [str(BIN / "feast"), "-c", str(folder), "-f", str(yaml_file), "apply"], env, root)
        if kind == "redis":  # the same rows as the project's SQLite store: materialize everything
            end = pd_timestamp_after_last_snapshot(root)
            run("feast materialize (redis)", [str(BIN / "feast"), "-c", str(repo), "-f", str(glue_yaml),
                                              "materialize", "2000-01-01T00:00:00", end], env, root)
        out[kind] = (glue_yaml, twohop_yaml)
    return out


def pd_timestamp_after_last_snapshot(root: Path) -> str:
    import pandas as pd

    from glue.settings import get_settings

    snapshots = pd.read_parquet(get_settings().features_dir / "customer_daily.parquet",
                                columns=["event_timestamp"])
    return (snapshots["event_timestamp"].max() + pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")


def run(label: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"  {label}: {time.perf_counter() - start:.1f} s", flush=True)


# --- servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(name: str, cmd: list[str], env: dict[str, str], ready_url: str, cwd: Path, timeout: float = 180):
    """Start one server process, wait for `ready_url` to answer 200, stop it (by its pid) afterwards."""
    import httpx

    log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    start = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"{name} not ready after {timeout:.0f} s (log: {log.name})")
            time.sleep(0.25)
        print(f"  {name} ready in {time.perf_counter() - start:.1f} s", flush=True)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the server's own process group (start_new_session)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


# --- clients -------------------------------------------------------------------------------------------


class Http:
    """A keep-alive HTTP/1.1 connection posting JSON: the lightest Python load generator.

    httpx costs ~0.7 ms of client CPU per request, more than the server under test spends on a
    single transaction; the standard library's http.client costs ~0.2 ms. Both stacks use this.
    """

    def __init__(self, url: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, path: str, body: bytes) -> Any:
        self.conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {answer.status}: {data[:300]!r}")
        return json.loads(data)


class OneHop:
    """POST /models/<model>/predict to glue serve."""

    def __init__(self, url: str, model: str = MODEL) -> None:
        self.http = Http(url)
        self.route = f"/models/{model}/predict"

    def score(self, body: bytes) -> list[float]:
        return [p["score"] for p in self.http.post(self.route, body)["predictions"]]

    @staticmethod
    def body(rows: list[dict[str, Any]]) -> bytes:
        return json.dumps({"instances": rows}).encode()


class TwoHop:
    """Features from the Feast feature server, then scores from the MLflow scoring server."""

    def __init__(self, feast_url: str, mlflow_url: str, service: str, columns: list[str]) -> None:
        self.feast = Http(feast_url)
        self.mlflow = Http(mlflow_url)
        self.service = service
        self.columns = columns

    def body(self, rows: list[dict[str, Any]]) -> bytes:
        import datetime as dt

        # the request source's event_timestamp as epoch seconds (the view takes those or a datetime)
        moments = [int(dt.datetime.fromisoformat(r["event_timestamp"]).timestamp()) for r in rows]
        entities = {k: [r[k] for r in rows] for k in ("customer_id", "merchant_id", "amount", "channel",
                                                       "card_present")}
        return json.dumps({"feature_service": self.service, "full_feature_names": True,
                           "entities": {**entities, "event_timestamp": moments}}).encode()

    def score(self, body: bytes) -> list[float]:
        data = self.feast.post("/get-online-features", body)
        index = {n: i for i, n in enumerate(data["metadata"]["feature_names"])}
        values = [data["results"][index[c]]["values"] for c in self.columns]
        matrix = [list(row) for row in zip(*values, strict=True)]
        request = {"dataframe_split": {"columns": self.columns, "data": matrix}}
        predictions = self.mlflow.post("/invocations", json.dumps(request).encode())["predictions"]
        return [p[1] if isinstance(p, list) else p["1"] for p in predictions]


# --- load ----------------------------------------------------------------------------------------------


def sequential(call: Callable[[bytes], Any], bodies: list[bytes]) -> np.ndarray:
    """Latencies (s) of one client sending the bodies back to back."""
    out = np.empty(len(bodies))
    for i, body in enumerate(bodies):
        start = time.perf_counter()
        call(body)
        out[i] = time.perf_counter() - start
    return out


def concurrent(make: Callable[[], Callable[[bytes], Any]], bodies: list[bytes], clients: int,
               seconds: float) -> tuple[float, np.ndarray, int]:
    """(requests/s, latencies, failures) of `clients` threads sending for `seconds`."""
    stop = threading.Event()
    results: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients

    def run(k: int) -> None:
        call = make()
        i = k
        while not stop.is_set():
            start = time.perf_counter()
            try:
                call(bodies[i % len(bodies)])
                results[k].append(time.perf_counter() - start)
            except Exception:
                failures[k] += 1
            i += clients

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies = np.array([x for part in results for x in part])
    return len(latencies) / elapsed, latencies, sum(failures)


def measure(label: str, make: Callable[[], Any], rows: list[dict[str, Any]], batch: int, args: Any
            ) -> dict[str, float]:
    client = make()
    n = args.requests if batch == 1 else max(50, args.requests // 10)
    starts = [(i * batch) % (len(rows) - batch + 1) for i in range(n)]
    bodies = [client.body(rows[s:s + batch]) for s in starts]
    sequential(client.score, bodies[: min(50, n)])  # warm-up
    lat = sequential(client.score, bodies)
    rps, lat_c, failed = concurrent(lambda: make().score, bodies, args.concurrency, args.seconds)
    out = {"p50": np.percentile(lat, 50) * 1e3, "p99": np.percentile(lat, 99) * 1e3,
           "rps1": len(lat) / lat.sum(), "rps": rps, "p50c": np.percentile(lat_c, 50) * 1e3,
           "p99c": np.percentile(lat_c, 99) * 1e3, "failed": failed}
    print(f"  {label:<8} {batch:>4} tx  p50 {out['p50']:7.2f} ms  p99 {out['p99']:7.2f} ms  "
          f"{out['rps1']:7.1f} req/s (1 client)  |  {args.concurrency} clients: {rps:7.1f} req/s "
          f"= {rps * batch:8.0f} tx/s, p50 {out['p50c']:7.2f} ms, p99 {out['p99c']:7.2f} ms"
          + (f", {failed} failed" if failed else ""), flush=True)
    return out


# --- the floor: scikit-learn alone ------------------------------------------------------------------


def logged_matrix(name: str, version: str, columns: list[str], rows: list[dict[str, Any]]) -> Any:
    """The features glue serve gave version `version` for each of `rows`, from its prediction log."""
    import pandas as pd

    from glue import prediction_log
    from glue.settings import get_settings

    folder = prediction_log.log_folder(get_settings())
    seen: dict[tuple, list[Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["model_name"] == name and r["model_version"] == version and r["arm"] == "champion":
                seen[tuple(r["request"].get(k) for k in REQUEST_KEY)] = [r["features"][c] for c in columns]
    keys = [tuple(row[k] for k in REQUEST_KEY) for row in rows]
    missing = sum(1 for k in keys if k not in seen)
    if missing:
        raise RuntimeError(f"{missing} of {len(rows)} rows have no line in the prediction log ({folder})")
    return pd.DataFrame([seen[k] for k in keys], columns=columns, dtype=float)


def sklearn_floor(name: str, version: str, matrix: Any, args: Any) -> tuple[dict[int, dict[str, float]], Any]:
    """p50 / p99 of the champion's predict_proba on the same batches as `measure` (one thread), and
    its scores of the first 100 rows."""
    from threadpoolctl import threadpool_limits

    from glue.adapters import mlflow

    model = mlflow.load_sklearn_model(mlflow.get_version(name, version).uri)
    out = {}
    with threadpool_limits(limits=1):  # as the servers run (OMP_NUM_THREADS=1)
        for batch in (1, 100):
            n = args.requests if batch == 1 else max(50, args.requests // 10)
            frames = [matrix.iloc[s:s + batch] for s in ((i * batch) % (len(matrix) - batch + 1)
                                                         for i in range(n))]
            for frame in frames[:50]:  # warm-up
                model.predict_proba(frame)
            lat = np.empty(n)
            for i, frame in enumerate(frames):
                start = time.perf_counter()
                model.predict_proba(frame)
                lat[i] = time.perf_counter() - start
            out[batch] = {"p50": np.percentile(lat, 50) * 1e3, "p99": np.percentile(lat, 99) * 1e3,
                          "rps1": n / lat.sum()}
            one = out[batch]
            print(f"  {'sklearn':<8} {batch:>4} tx  p50 {one['p50']:7.2f} ms  p99 {one['p99']:7.2f} ms  "
                  f"{one['rps1']:7.1f} req/s (1 thread, in-process: no HTTP, no feature read)", flush=True)
        scores = model.predict_proba(matrix.iloc[:100])[:, 1]
    return out, scores


def flush_redis(connection: str) -> None:
    """Empty the benchmark's Redis db (the rows `feast materialize` wrote), never db 0 or 1."""
    import redis

    address, *options = connection.split(",")
    host, _, port = address.partition(":")
    settings = dict(o.split("=", 1) for o in options if "=" in o)
    db = int(settings.get("db", 0))
    if db in (0, 1):  # a user's own prod set (Feast online store, Celery broker)
        print(f"  Redis db {db} left as it is (not the benchmark's own)")
        return
    redis.Redis(host=host or "127.0.0.1", port=int(port or 6379), db=db,
                password=settings.get("password")).flushdb()
    print(f"  Redis db {db} flushed")


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, help="the registered model to drive (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="prepare a temporary project even inside a built one")
    parser.add_argument("--requests", type=int, default=1000, help="sequential single-transaction requests")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads for the throughput run")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each throughput run")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of glue serve")
    parser.add_argument("--no-two-hop", action="store_true", help="only measure glue serve")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--store", choices=("sqlite", "redis", "both"), default="both",
                        help="online store(s) to measure (default: both)")
    parser.add_argument("--redis", default="127.0.0.1:6379,db=15",
                        help="Feast connection string of the Redis online store (its keys are overwritten, "
                             "then flushed)")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn floor")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this file")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.prepare:
        prepare_project(args.prepare)
        return

    cwd = Path.cwd()
    with ExitStack() as stack:
        if not args.fresh and (cwd / "data").is_dir() and (cwd / ".glue").is_dir() and (
                cwd / "params.yaml").is_file():
            root = cwd
            print(f"project: {root} (existing)")
        else:
            tmp = Path(tempfile.mkdtemp(prefix="glue-serving-bench-"))
            if not args.keep:
                stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            print(f"preparing a project in {tmp}", flush=True)
            root = tmp / "project"
            # in a child process: MLflow's, Feast's and GX's threads and caches would otherwise stay in
            # the load generator's process and take CPU from the clients (p50 +1.5 ms measured)
            subprocess.run([sys.executable, __file__, "--prepare", str(root)], check=True)
        name = args.model
        version, columns, tracking_uri = champion_info(root, name)
        rows = sample_transactions(root, 2000)
        from glue.settings import get_settings

        settings = get_settings()
        spec = settings.model(name)
        service = spec.feature_service
        print(f"model {name} version {version} ({len(columns)} features, "
              f"{spec.estimator.type} {spec.estimator.params}); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

        # PATH: `mlflow models serve` execs `uvicorn` by name
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "GLUE_PROJECT_DIR": str(root), "MLFLOW_TRACKING_URI": tracking_uri,
               "MLFLOW_REGISTRY_URI": tracking_uri, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        # glue serve alone on SQLite needs nothing more; anything else needs the benchmark's repos
        sqlite_only = args.no_two_hop and args.store == "sqlite"
        if not sqlite_only:
            stack.callback(flush_redis, args.redis)
        yamls = {} if sqlite_only else prepare_stores(root, args.redis, env)
        kinds = ("sqlite", "redis") if args.store == "both" else (args.store,)
        results: dict[tuple[str, str, int], dict[str, float]] = {}
        one_hop_scores_of: dict[str, list[float]] = {}
        diffs: dict[str, float] = {}
        for kind in kinds:
            print(f"online store: {kind}" + (f" ({args.redis})" if kind == "redis" else ""), flush=True)
            glue_env = dict(env)
            if kind in yamls:
                glue_env["GLUE_FEAST_YAML"] = str(yamls[kind][0])
            glue_port = free_port()
            glue_cmd = [str(BIN / "glue"), "serve", "--port", str(glue_port), "--workers", str(args.workers)]
            with server(f"glue serve ({args.workers} worker)", glue_cmd, glue_env,
                        f"http://127.0.0.1:{glue_port}/ready", root):
                url = f"http://127.0.0.1:{glue_port}"
                for batch in (1, 100):
                    results[(kind, "one-hop", batch)] = measure(
                        "one-hop", lambda u=url: OneHop(u, name), rows, batch, args)
                one_hop_scores = OneHop(url, name).score(OneHop.body(rows[:100]))
                one_hop_scores_of[kind] = one_hop_scores
            if args.no_two_hop:
                continue

            feast_port, mlflow_port = free_port(), free_port()
            feast_cmd = [str(BIN / "feast"), "-c", str(root / "bench_twohop"), "-f", str(yamls[kind][1]),
                         "serve", "-p", str(feast_port), "-w", "1", "--no-access-log",
                         "--max-requests", "100000000"]
            mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion",
                          "--env-manager", "local", "-p", str(mlflow_port), "-w", "1"]
            with server("feast serve", feast_cmd, env, f"http://127.0.0.1:{feast_port}/health", root), \
                    server("mlflow models serve", mlflow_cmd, env, f"http://127.0.0.1:{mlflow_port}/health",
                           root):

                def make(features: int = feast_port, scores: int = mlflow_port) -> TwoHop:
                    return TwoHop(f"http://127.0.0.1:{features}", f"http://127.0.0.1:{scores}", service,
                                  columns)

                for batch in (1, 100):
                    results[(kind, "two-hop", batch)] = measure("two-hop", make, rows, batch, args)
                two = make()
                two_hop_scores = two.score(two.body(rows[:100]))
            diff = float(np.max(np.abs(np.array(one_hop_scores) - np.array(two_hop_scores))))
            print(f"  same scores on both stacks: largest difference {diff:.2e} over 100 transactions")
            diffs[kind] = diff

        floor, floor_note, floor_diffs = {}, "", {}
        if not args.no_sklearn:
            print("scikit-learn predict_proba of the champion on the features glue serve logged for the "
                  "same rows:", flush=True)
            try:
                matrix = logged_matrix(name, version, columns, rows)
                floor, floor_scores = sklearn_floor(name, version, matrix, args)
                floor_diffs = {kind: float(np.max(np.abs(np.array(scores) - floor_scores)))
                               for kind, scores in one_hop_scores_of.items()}
                for kind, diff in floor_diffs.items():
                    print(f"  {kind}: glue serve's scores vs scikit-learn's: largest difference {diff:.2e} "
                          "over 100 transactions")
            except Exception as exc:  # noqa: BLE001 - the servers' numbers stand without the floor
                floor_note = f"not measured: {type(exc).__name__}: {exc}"[:300]
                print(f"  {floor_note}")

        report(results, kinds, args)
        if args.json:
            write_json(args.json, figures(results, kinds, floor, floor_diffs, diffs, args, floor_note),
                       model={"name": name, "version": version, "features": len(columns),
                              "estimator": spec.estimator.type},
                       cores=os.cpu_count(), concurrency=args.concurrency, seconds=args.seconds,
                       requests=args.requests, workers=args.workers,
                       results={kind: {stack: {batch: out for (k, st, batch), out in results.items()
                                               if k == kind and st == stack}
                                       for stack in ("one-hop", "two-hop")} for kind in kinds},
                       sklearn=floor, sklearn_note=floor_note, score_difference_two_hop=diffs,
                       score_difference_sklearn=floor_diffs)


def figures(results: dict[tuple[str, str, int], dict[str, float]], kinds: tuple[str, ...],
            floor: dict[int, dict[str, float]], floor_diffs: dict[str, float], diffs: dict[str, float],
            args: Any, floor_note: str) -> list[dict[str, Any]]:
    """glue serve beside the two-hop stack and scikit-learn alone, per online store; the targets."""
    two_hop = "two-hop: feast serve + mlflow models serve"
    alone = "scikit-learn predict_proba alone (in-process)"
    out = []
    for kind in kinds:
        store = {"sqlite": "SQLite", "redis": "Redis"}[kind]
        one = results[(kind, "one-hop", 1)]
        out += [figure(f"glue serve p50, 1 tx, {store}", one["p50"], "ms", limit=("<", TARGET_P50_MS)),
                figure(f"glue serve p99, 1 tx, {store}", one["p99"], "ms", limit=("<", TARGET_P99_MS))]
        for batch in (1, 100):
            a, b = results[(kind, "one-hop", batch)], results.get((kind, "two-hop", batch))
            if b:
                out.append(figure(f"glue serve p50, {batch} tx, {store}", a["p50"], "ms",
                                  peer=f"{two_hop} p50", peer_value=b["p50"]))
            if batch in floor:
                out.append(figure(f"glue serve p50, {batch} tx, {store}", a["p50"], "ms", peer=f"{alone} p50",
                                  peer_value=floor[batch]["p50"],
                                  note="scikit-learn on the logged features: no HTTP, no Feast read; "
                                       "glue serve scores with its compiled trees"))
            if b:
                out.append(figure(f"glue serve throughput, {batch} tx, {store}", a["rps"] * batch, "tx/s",
                                  peer=two_hop, peer_value=b["rps"] * batch,
                                  ratio_limit=(">=", TARGET_THROUGHPUT_RATIO),
                                  note=f"{args.concurrency} client threads, {args.seconds:g} s"))
        failed = sum(results[(kind, "one-hop", batch)]["failed"] for batch in (1, 100))
        out.append(figure(f"glue serve failed requests, {store}", failed, limit=("<=", 0)))
        if kind in diffs:
            out.append(figure(f"glue serve scores vs two-hop, {store}", diffs[kind], limit=("<=", 1e-9),
                              note="largest difference, 100 transactions"))
        if kind in floor_diffs:
            out.append(figure(f"glue serve scores vs scikit-learn, {store}", floor_diffs[kind],
                              limit=("<=", 1e-9), note="largest difference, 100 transactions"))
    if floor_note:
        out.append(figure("scikit-learn floor", None, passed=False, note=floor_note))
    return out


def report(results: dict[tuple[str, str, int], dict[str, float]], kinds: tuple[str, ...], args: Any) -> None:
    """The targets of issue 5 and the one-hop/two-hop ratios, per online store."""
    print("summary (targets: 1 tx p50 < 3 ms, p99 < 8 ms; throughput >= 2x the two-hop stack):")
    for kind in kinds:
        one = results[(kind, "one-hop", 1)]
        print(f"  {kind}: one-hop 1 tx p50 {one['p50']:.2f} ms ({'ok' if one['p50'] < 3 else 'MISSED'}), "
              f"p99 {one['p99']:.2f} ms ({'ok' if one['p99'] < 8 else 'MISSED'})")
        if (kind, "two-hop", 1) not in results:
            continue
        for batch in (1, 100):
            a, b = results[(kind, "one-hop", batch)], results[(kind, "two-hop", batch)]
            ratio = a["rps"] / b["rps"]
            print(f"  {kind} {batch:>4} tx: latency two-hop/one-hop p50 x{b['p50'] / a['p50']:.2f}, "
                  f"p99 x{b['p99'] / a['p99']:.2f}; throughput one-hop/two-hop ({args.concurrency} clients) "
                  f"x{ratio:.2f} ({'ok' if ratio >= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()

"""Latency and throughput of `glue serve` (one hop) against feast serve + mlflow models serve (two hops).

One hop: the client POSTs transactions to `glue serve`, which reads Feast's online store
in-process and scores with the champion it holds in memory. Two hops: the client asks the Feast
feature server (`feast serve`) for the features, then `mlflow models serve` (models:/<name>@champion,
--env-manager local) for the scores. Each server runs one worker on loopback; every process,
the load generator included, shares the same cores, so the numbers are for the whole host.

Measured for 1 transaction and for 100 transactions per request: p50 / p99 latency of one client
sending requests back to back, and throughput (requests/s and transactions/s) of --concurrency
clients for --seconds. The two stacks must give the same scores; the largest difference is printed.

The project: the current directory if it holds data/ and .glue/ (a built project with a
champion), else a small one prepared in a temporary directory (20 demo days x 1000 transactions,
features materialized to SQLite, model trained with params.yaml, promoted); --fresh forces that.
The Redis online store variant is not measured here (see the printed note).

    uv run python benchmarks/serving.py [--fresh] [--requests 1000] [--concurrency 4] [--seconds 8]
                                        [--workers 1] [--no-two-hop] [--keep]
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

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0], and benchmarks/monitoring.py would shadow the
# `monitoring` package that glue.settings imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
BIN = Path(sys.executable).parent
LAST_SNAPSHOT_MORNING = "T09:30:00Z"


# --- the project ---------------------------------------------------------------------------------------


def prepare_project(root: Path) -> Path:
    """A built project in `root`: demo data, validated, features online, champion promoted."""
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

    from glue import demo_data, features, promotion, training, validation
    from glue.settings import DemoParams, get_settings

    get_settings.cache_clear()
    settings = get_settings()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("demo data", lambda: demo_data.generate(
            DemoParams(days=20, transactions_per_day=1000, customers=3000, merchants=200, fraud_rate=0.03,
                       label_delay_days=3), settings.raw_dir)),
        ("validate", lambda: validation.validate_batches(settings)),
        ("features", lambda: features.build_features(settings)),
        ("train", lambda: training.train(settings)),
        ("promote", lambda: promotion.evaluate_and_promote(settings)),
    ]
    with threadpool_limits(limits=1, user_api="openmp"):  # small fits: OpenMP threads only wait
        for name, step in steps:
            start = time.perf_counter()
            step()
            print(f"  {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return root


def champion_info(root: Path) -> tuple[str, str, list[str], str]:
    """(model name, champion version, its feature columns, tracking URI) of the project."""
    os.environ["GLUE_PROJECT_DIR"] = str(root)
    from glue import tracking
    from glue.settings import get_settings
    from glue.training import FEATURE_COLUMNS

    get_settings.cache_clear()
    settings = get_settings()
    tracking.configure(settings)
    name = settings.params.train.registered_model_name
    ref = tracking.get_alias(name, "champion")
    if ref is None:
        raise SystemExit(f"{root}: model {name} has no champion; run the loop first or use --fresh")
    return name, ref.version, ref.tags[FEATURE_COLUMNS].split(","), settings.mlflow_tracking_uri


def sample_transactions(root: Path, n: int) -> list[dict[str, Any]]:
    """Transactions of the last day (their customers and merchants are online), as request bodies."""
    from glue.features import read_transactions
    from glue.settings import get_settings

    tx = read_transactions(get_settings())
    last = tx["event_timestamp"].dt.floor("D").max()
    now = (last + np.timedelta64(1, "D")).strftime("%Y-%m-%d") + LAST_SNAPSHOT_MORNING
    recent = tx[tx["event_timestamp"] >= last].sample(frac=1.0, random_state=0)
    rows = [{"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
             "merchant_id": int(r.merchant_id), "amount": float(r.amount), "channel": str(r.channel),
             "card_present": bool(r.card_present), "event_timestamp": now}
            for r in recent.itertuples()]
    return [rows[i % len(rows)] for i in range(n)]


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


class OneHop:
    """POST /predict to glue serve."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=30)

    def score(self, body: bytes) -> list[float]:
        answer = self.http.post("/predict", content=body, headers={"content-type": "application/json"})
        answer.raise_for_status()
        return [p["score"] for p in answer.json()["predictions"]]

    @staticmethod
    def body(rows: list[dict[str, Any]]) -> bytes:
        return json.dumps({"transactions": rows}).encode()


class TwoHop:
    """Features from the Feast feature server, then scores from the MLflow scoring server."""

    def __init__(self, feast_url: str, mlflow_url: str, service: str, columns: list[str]) -> None:
        import httpx

        self.feast = httpx.Client(base_url=feast_url, timeout=30)
        self.mlflow = httpx.Client(base_url=mlflow_url, timeout=30)
        self.service = service
        self.columns = columns

    def body(self, rows: list[dict[str, Any]]) -> bytes:
        hour = [int(r["event_timestamp"][11:13]) for r in rows]
        entities = {k: [r[k] for r in rows] for k in ("customer_id", "merchant_id", "amount", "channel",
                                                       "card_present")}
        return json.dumps({"feature_service": self.service, "full_feature_names": True,
                           "entities": {**entities, "event_hour": hour}}).encode()

    def score(self, body: bytes) -> list[float]:
        json_type = {"content-type": "application/json"}
        got = self.feast.post("/get-online-features", content=body, headers=json_type)
        got.raise_for_status()
        data = got.json()
        index = {n: i for i, n in enumerate(data["metadata"]["feature_names"])}
        values = [data["results"][index[c]]["values"] for c in self.columns]
        matrix = [list(row) for row in zip(*values, strict=True)]
        answer = self.mlflow.post("/invocations", json={"dataframe_split": {"columns": self.columns,
                                                                           "data": matrix}})
        answer.raise_for_status()
        predictions = answer.json()["predictions"]
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


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true",
                        help="prepare a temporary project even inside a built one")
    parser.add_argument("--requests", type=int, default=1000, help="sequential single-transaction requests")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads for the throughput run")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each throughput run")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of glue serve")
    parser.add_argument("--no-two-hop", action="store_true", help="only measure glue serve")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()

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
            root = prepare_project(tmp / "project")
        name, version, columns, tracking_uri = champion_info(root)
        rows = sample_transactions(root, 2000)
        from glue.settings import get_settings

        settings = get_settings()
        service = settings.params.features.feature_service
        print(f"model {name} version {version} ({len(columns)} features, "
              f"{settings.params.train.model.type} {settings.params.train.model.params}); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

        # PATH: `mlflow models serve` execs `uvicorn` by name
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "GLUE_PROJECT_DIR": str(root), "MLFLOW_TRACKING_URI": tracking_uri,
               "MLFLOW_REGISTRY_URI": tracking_uri, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        results: dict[tuple[str, int], dict[str, float]] = {}

        glue_port = free_port()
        glue_cmd = [str(BIN / "glue"), "serve", "--port", str(glue_port), "--workers", str(args.workers)]
        with server(f"glue serve ({args.workers} worker)", glue_cmd, env,
                    f"http://127.0.0.1:{glue_port}/ready", root):
            url = f"http://127.0.0.1:{glue_port}"
            for batch in (1, 100):
                results[("one-hop", batch)] = measure("one-hop", lambda: OneHop(url), rows, batch, args)
            one_hop_scores = OneHop(url).score(OneHop.body(rows[:100]))

        if args.no_two_hop:
            return
        feast_port, mlflow_port = free_port(), free_port()
        feast_cmd = [str(BIN / "feast"), "-c", str(settings.feast_repo), "serve", "-p", str(feast_port),
                     "-w", "1", "--no-access-log", "--max-requests", "100000000"]
        mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion",
                      "--env-manager", "local", "-p", str(mlflow_port), "-w", "1"]
        feast_ready = f"http://127.0.0.1:{feast_port}/health"
        mlflow_ready = f"http://127.0.0.1:{mlflow_port}/health"
        with server("feast serve", feast_cmd, env, feast_ready, root), \
                server("mlflow models serve", mlflow_cmd, env, mlflow_ready, root):

            def make() -> TwoHop:
                return TwoHop(f"http://127.0.0.1:{feast_port}", f"http://127.0.0.1:{mlflow_port}", service,
                              columns)

            for batch in (1, 100):
                results[("two-hop", batch)] = measure("two-hop", make, rows, batch, args)
            two = make()
            two_hop_scores = two.score(two.body(rows[:100]))

        diff = float(np.max(np.abs(np.array(one_hop_scores) - np.array(two_hop_scores))))
        print(f"same scores on both stacks: largest difference {diff:.2e} over 100 transactions")
        print("ratios (> 1: one hop is better):")
        for batch in (1, 100):
            a, b = results[("one-hop", batch)], results[("two-hop", batch)]
            print(f"  {batch:>4} tx: latency two-hop/one-hop p50 x{b['p50'] / a['p50']:.2f}, "
                  f"p99 x{b['p99'] / a['p99']:.2f}; throughput one-hop/two-hop ({args.concurrency} clients) "
                  f"x{a['rps'] / b['rps']:.2f}")
        print("Redis online store: not measured (the SQLite store is what the local profile serves from).")


if __name__ == "__main__":
    main()

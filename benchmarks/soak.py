"""A bounded soak of `glue serve --workers 2` while its champion switches between two different models.

Why: the serving tests run seconds; a leak, a lost log line or a request answered by the wrong
model shows only under sustained load. This script (a benchmark that prints numbers, not a test)
drives `glue serve` on loopback with --clients threads for --requests requests (or --seconds),
moves the fraud model's ``champion`` alias between two genuinely different registered versions
(the project's boosted trees and a logistic regression trained by `glue train`'s own function)
every --switch-seconds, samples the server processes' RSS (master and workers) every 1,000
requests, and stops the server with SIGTERM. Then it checks:

- failures: every exception and non-200 of every client thread is counted (a thread that dies
  is a failure too), never lost;
- the prediction log (``.glue/predictions/*.jsonl``) holds exactly one line per answered request,
  written out by the time the server has exited after SIGTERM;
- every answer's score equals the prediction of the version named in the answer, recomputed with
  that version's scikit-learn model (loaded once from the registry) on the features the log says
  the model got (tolerance 1e-9);
- RSS: start, end, and the least-squares slope in KB per 10k requests (all samples, and after the
  first fifth as warm-up).

The project is prepared in a child process as benchmarks/serving.py does (its helpers are imported).

    uv run python benchmarks/soak.py [--requests 100000] [--seconds 1800] [--clients 4]
                                     [--switch-seconds 3] [--json PATH] [--keep] [--project DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import figure, write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_serving", Path(__file__).with_name("serving.py"))
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # also drops this folder from sys.path (benchmarks/monitoring.py)
sys.path.insert(0, str(PROJECT_DIR))

MODEL = bench.MODEL
ROUTE = f"/models/{MODEL}/predict"
SECOND = {"type": "logistic_regression", "params": {"C": 0.05}}  # the other champion: not trees at all
TOLERANCE = 1e-9


# --- the project (in a child process) ------------------------------------------------------------------


def prepare(root: Path) -> None:
    """benchmarks/serving.py's project, plus a second fraud version of another estimator."""
    bench.prepare_project(root)
    from glue import training
    from glue.settings import get_settings
    from tests.conftest import one_openmp_thread

    settings = get_settings()
    spec = settings.model(MODEL)
    linear = spec.model_copy(update={"estimator": spec.estimator.model_copy(update=SECOND)})
    start = time.perf_counter()
    with one_openmp_thread():
        version = training.train(settings, linear).version
    print(f"  train {MODEL} {SECOND['type']} (version {version}): {time.perf_counter() - start:.1f} s",
          flush=True)


def versions(root: Path) -> tuple[str, str]:
    """(the champion, the other version): the two versions the soak switches between."""
    from glue import contract
    from glue.adapters import mlflow

    champion, _, _ = bench.champion_info(root, MODEL)
    other = mlflow.get_alias(MODEL, contract.CHALLENGER)
    assert other is not None and other.version != champion, "the second version is missing"
    return champion, other.version


# --- load ----------------------------------------------------------------------------------------------


class Soak:
    """Client threads, the alias switcher and the RSS sampler around one running server."""

    def __init__(self, url: str, server_pid: int, rows: list[dict[str, Any]], args: Any,
                 pair: tuple[str, str]) -> None:
        self.url, self.server_pid, self.rows, self.args, self.pair = url, server_pid, rows, args, pair
        self.ticket = itertools.count()  # request numbers, handed out to the threads
        self.done = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.answers: list[list[tuple[str, str, float]]] = [[] for _ in range(args.clients)]
        self.rss: list[tuple[int, int]] = []  # (requests answered, KB of the master and its workers)
        self.switches = 0

    def run(self) -> float:
        """Send until --requests or --seconds; the seconds it took."""
        threads = [threading.Thread(target=self._client, args=(k,), name=f"soak-client-{k}")
                   for k in range(self.args.clients)]
        helpers = [threading.Thread(target=self._switcher, name="soak-switcher"),
                   threading.Thread(target=self._sampler, name="soak-rss")]
        start = time.perf_counter()
        for t in (*threads, *helpers):
            t.start()
        deadline = start + self.args.seconds
        while any(t.is_alive() for t in threads):
            if time.perf_counter() > deadline:
                self.stop.set()
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        self.stop.set()
        for t in helpers:
            t.join()
        self._sample()
        return elapsed

    def _client(self, k: int) -> None:
        out = self.answers[k]
        try:
            http = bench.Http(self.url)
            while not self.stop.is_set():
                i = next(self.ticket)
                if i >= self.args.requests:
                    return
                row = {**self.rows[i % len(self.rows)], "transaction_id": f"soak-{i}"}
                try:
                    answer = http.post(ROUTE, json.dumps(row).encode())
                    (p,) = answer["predictions"]
                    out.append((answer["request_id"], p["model_version"], p["score"]))
                except Exception as exc:  # a non-200 (Http raises) or a broken connection: counted
                    self.failures.append(f"request {i}: {type(exc).__name__}: {str(exc)[:300]}")
                    http = bench.Http(self.url)
                with self.lock:
                    self.done += 1
        except BaseException as exc:  # the thread itself dies: counted, never silent
            self.failures.append(f"client {k} died: {type(exc).__name__}: {exc}")

    def _switcher(self) -> None:
        from glue import contract
        from glue.adapters import mlflow

        current = 0
        while not self.stop.wait(self.args.switch_seconds):
            current = 1 - current
            try:
                mlflow.set_alias(MODEL, contract.CHAMPION, self.pair[current])
                self.switches += 1
            except Exception as exc:
                self.failures.append(f"switch: {type(exc).__name__}: {exc}")

    def _sampler(self) -> None:
        next_mark = 0
        while not self.stop.is_set():
            if self.done >= next_mark:
                self._sample()
                next_mark = (self.done // 1000 + 1) * 1000
            time.sleep(0.02)

    def _sample(self) -> None:
        import psutil

        try:
            master = psutil.Process(self.server_pid)
            procs = [master, *master.children(recursive=True)]
            kb = sum(p.memory_info().rss for p in procs) // 1024
        except psutil.Error:
            return
        self.rss.append((self.done, kb))


# --- checks --------------------------------------------------------------------------------------------


def check_log(root: Path, answers: list[tuple[str, str, float]]) -> dict[str, Any]:
    """The log against the answers: 1:1 by request id, and every score its version's own prediction."""
    import pandas as pd

    from glue import contract, prediction_log
    from glue.adapters import mlflow
    from glue.settings import get_settings

    folder = prediction_log.log_folder(get_settings())
    lines = [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]
    lines = [r for r in lines if r["model_name"] == MODEL]
    counts: dict[str, int] = {}
    for r in lines:
        counts[r["request_id"]] = counts.get(r["request_id"], 0) + 1
    answered = {rid for rid, _, _ in answers}
    by_id = {r["request_id"]: r for r in lines}
    out: dict[str, Any] = {
        "log_lines": len(lines),
        "answers_without_log_line": len(answered - set(counts)),
        "log_lines_without_answer": len(set(counts) - answered),
        "requests_logged_twice": sum(1 for n in counts.values() if n > 1),
    }
    mismatches, largest, per_version = 0, 0.0, {}
    models = {}
    for version in sorted({v for _, v, _ in answers}):
        mine = [(rid, score) for rid, v, score in answers if v == version and rid in by_id]
        ref = mlflow.get_version(MODEL, version)
        columns = contract.feature_columns(ref.tags)
        models[version] = (mlflow.load_sklearn_model(ref.uri), columns)
        x = pd.DataFrame([[np.nan if (v := by_id[rid]["features"][c]) is None else v for c in columns]
                          for rid, _ in mine], columns=columns, dtype=float)
        expected = models[version][0].predict_proba(x)[:, 1]
        got = np.array([score for _, score in mine])
        diff = np.abs(got - expected)
        logged_version = sum(1 for rid, _ in mine if by_id[rid]["model_version"] != version)
        mismatches += int(np.count_nonzero(diff > TOLERANCE)) + logged_version
        largest = max(largest, float(diff.max(initial=0.0)))
        per_version[version] = len(mine)
        if len(models) == 2:  # the two versions on the same logged rows: how different they are
            (a, ca), (b, cb) = models.values()
            gap = np.abs(a.predict_proba(x[ca])[:, 1] - b.predict_proba(x[cb])[:, 1])
            out["versions_median_score_gap"] = float(np.median(gap))
    out.update(score_mismatches=mismatches, largest_score_difference=largest, answers_per_version=per_version)
    return out


def slope_kb_per_10k(rss: list[tuple[int, int]], skip: float = 0.0) -> float:
    """Least-squares slope of RSS (KB) against requests, per 10k requests, after the first `skip` share."""
    points = [(n, kb) for n, kb in rss if n >= skip * (rss[-1][0] if rss else 0)]
    if len(points) < 3:
        return float("nan")
    n, kb = np.array(points, dtype=float).T
    return float(np.polyfit(n, kb, 1)[0] * 10_000)


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    # the checks load each version's model from the registry: no MLflow progress bar per load
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests in all (%(default)s)")
    parser.add_argument("--seconds", type=float, default=1800.0, help="stop sending after this long")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of glue serve")
    parser.add_argument("--switch-seconds", type=float, default=3.0, help="champion moves this often")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="GLUE_SERVE_POLL_SECONDS")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this file")
    parser.add_argument("--project", type=Path, metavar="DIR", help="a project of an earlier --keep run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return

    tmp = None
    if args.project:
        root = args.project.resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="glue-soak-"))
        root = tmp / "project"
        print(f"preparing a project in {root}", flush=True)
        # a child process: MLflow's, Feast's and GX's threads would otherwise stay in the load generator
        subprocess.run([sys.executable, __file__, "--prepare", str(root)], check=True)
    try:
        report = soak(root, args)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.json, figures(report), **report)
    failed = report["failures"] or report["score_mismatches"] or report["answers_without_log_line"] or (
        report["log_lines_without_answer"] or report["requests_logged_twice"] or report["server_exit_code"])
    sys.exit(1 if failed else 0)


def soak(root: Path, args: Any) -> dict[str, Any]:
    """Serve, load, switch, SIGTERM, check; the numbers."""
    from glue import contract, prediction_log
    from glue.adapters import mlflow
    from glue.settings import get_settings

    pair = versions(root)
    mlflow.set_alias(MODEL, contract.CHAMPION, pair[0])
    rows = bench.sample_transactions(root, 2000)
    shutil.rmtree(prediction_log.log_folder(get_settings()), ignore_errors=True)  # this run's lines only
    port = bench.free_port()
    env = {**os.environ, "GLUE_PROJECT_DIR": str(root), "GLUE_SERVE_POLL_SECONDS": str(args.poll_seconds),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    log = tempfile.NamedTemporaryFile("w+", prefix="soak-serve-", suffix=".log", delete=False)
    cmd = [str(bench.BIN / "glue"), "serve", "--port", str(port), "--workers", str(args.workers)]
    server = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        print(f"glue serve --workers {args.workers} ready (pid {server.pid}); versions {pair[0]} "
              f"({SPEC_NAMES[0]}) and {pair[1]} ({SPEC_NAMES[1]}); {args.clients} clients, "
              f"{args.requests} requests at most, {args.seconds:.0f} s at most, "
              f"switch every {args.switch_seconds:g} s", flush=True)
        load = Soak(url, server.pid, rows, args, pair)
        elapsed = load.run()
        server.send_signal(signal.SIGTERM)  # the master; uvicorn stops its workers gracefully
        code = server.wait(timeout=120)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    answers = [a for part in load.answers for a in part]
    report: dict[str, Any] = {
        "requests": load.done, "answers": len(answers), "failures": len(load.failures),
        "failure_examples": load.failures[:5], "seconds": round(elapsed, 1),
        "requests_per_second": round(load.done / elapsed, 1), "switches": load.switches,
        "workers": args.workers, "clients": args.clients, "server_exit_code": code, "server_log": log.name,
    }
    report.update(check_log(root, answers))
    rss = load.rss
    report.update(rss_samples=len(rss), rss_start_kb=rss[0][1] if rss else None,
                  rss_end_kb=rss[-1][1] if rss else None,
                  rss_max_kb=max(kb for _, kb in rss) if rss else None,
                  rss_slope_kb_per_10k=round(slope_kb_per_10k(rss), 1),
                  rss_slope_kb_per_10k_after_warmup=round(slope_kb_per_10k(rss, skip=0.2), 1))
    print_report(report)
    return report


SPEC_NAMES = ("params.yaml's estimator", SECOND["type"])


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The soak's checks, each against zero, and its throughput and memory growth."""
    load = (f"{r['requests']} requests, {r['clients']} clients, {r['workers']} workers, "
            f"{r['switches']} champion switches")
    log_ok = not (r["answers_without_log_line"] or r["log_lines_without_answer"]
                  or r["requests_logged_twice"])
    mb = [f"{kb / 1024:.0f}" if kb is not None else "-" for kb in (r["rss_start_kb"], r["rss_end_kb"])]
    return [
        figure("failed requests", r["failures"], limit=("<=", 0), note=load),
        figure("scores unlike their version's scikit-learn prediction", r["score_mismatches"],
               limit=("<=", 0), note=f"tolerance {TOLERANCE:g}; largest difference "
                                      f"{r['largest_score_difference']:.1e}"),
        figure("prediction-log lines", r["log_lines"], peer="answers", peer_value=r["answers"],
               passed=log_ok, note=f"without a line {r['answers_without_log_line']}, without an answer "
                                   f"{r['log_lines_without_answer']}, twice {r['requests_logged_twice']}"),
        figure("server exit code after SIGTERM", r["server_exit_code"],
               passed=r["server_exit_code"] == 0),
        figure("throughput", r["requests_per_second"], "req/s", note=f"{r['seconds']} s"),
        figure("RSS growth after the first fifth", r["rss_slope_kb_per_10k_after_warmup"], "KB/10k req",
               note=f"master + workers {mb[0]} -> {mb[1]} MB; "
                    f"{r['rss_slope_kb_per_10k']} KB/10k over the whole run"),
    ]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"glue serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit("glue serve did not become ready")


def print_report(r: dict[str, Any]) -> None:
    print(f"requests {r['requests']} in {r['seconds']} s ({r['requests_per_second']} req/s), "
          f"failures {r['failures']}, champion switches {r['switches']}, server exit code "
          f"{r['server_exit_code']} after SIGTERM")
    for example in r["failure_examples"]:
        print(f"  failure: {example}")
    print(f"prediction log: {r['log_lines']} lines for {r['answers']} answers; answers without a line "
          f"{r['answers_without_log_line']}, lines without an answer {r['log_lines_without_answer']}, "
          f"requests logged twice {r['requests_logged_twice']}")
    print(f"scores: {r['score_mismatches']} differ from their version's own prediction by more than "
          f"{TOLERANCE:g} (largest difference {r['largest_score_difference']:.2e}); answers per version "
          f"{r['answers_per_version']}; the versions' median score gap "
          f"{r.get('versions_median_score_gap', float('nan')):.4f}")
    print(f"RSS (master + workers): {r['rss_start_kb'] / 1024:.1f} MB -> {r['rss_end_kb'] / 1024:.1f} MB "
          f"(max {r['rss_max_kb'] / 1024:.1f} MB, {r['rss_samples']} samples); slope "
          f"{r['rss_slope_kb_per_10k']} KB per 10k requests ({r['rss_slope_kb_per_10k_after_warmup']} "
          "after the first fifth)")


if __name__ == "__main__":
    main()

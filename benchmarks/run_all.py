"""Every benchmark in one command: one table of figures, each beside its peer or limit from the same run.

Each benchmark script of this folder runs as a child process (``python benchmarks/<name>.py ...
--json <tmp>``) under GNU ``/usr/bin/time -v``, one after the other, never two at once (they
measure time on a shared machine). Its --json figures (benchmarks/_common.py) go into one table:
the two-hop serving stack and scikit-learn's own predict_proba beside glue serve, importing each
tool beside `glue --help`, the full-data drift check beside the sampled one, each Feast offline
store beside DuckDB, every target as pass or fail. Written to ``results.md`` and ``results.json``
(in --out, default benchmarks/), with the machine and the commit they were measured on.

A benchmark that fails is a failed row with the tail of its output; the others still run. The
exit code is 1 if any benchmark failed or any limit was missed.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only serving,soak] [--out DIR]
                                           [--args "scale=--sizes 100000"] [--timeout SECONDS]

--quick: small sizes, seconds per benchmark where the benchmark allows (scale's 100k still takes
minutes). The default is each benchmark's own full run (scale at 100k and 1M with every store:
an hour or more on two cores). --args NAME=ARGS replaces one benchmark's arguments of the mode.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import figure

HERE = Path(__file__).resolve().parent
PROJECT_DIR = HERE.parent
GNU_TIME = "/usr/bin/time"

# name: (--quick arguments, full-run arguments), in the order they run: the short ones first
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "cli_startup": (["--runs", "5", "--import-runs", "3"], []),
    "dag_parse": ([], []),
    "monitoring": (["--sizes", "10000,200000"], []),
    "serving": (["--fresh", "--store", "sqlite", "--requests", "300", "--seconds", "3"], ["--fresh"]),
    "soak": (["--requests", "10000"], []),
    "scale": (["--sizes", "100000", "--stores", "duckdb,file"],
              ["--stores", "duckdb,file,postgres,ray", "--pit-timeout", "900"]),
}
TAIL_LINES = 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                        help="replace one benchmark's arguments (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results.json go")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop a benchmark after this many seconds (default: 900 with --quick, 4 h)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    arguments = {name: list(BENCHMARKS[name][0 if args.quick else 1]) for name in names}
    for item in args.args:
        name, _, rest = item.partition("=")
        if name not in BENCHMARKS:
            parser.error(f"--args {item!r}: unknown benchmark {name!r}")
        arguments[name] = shlex.split(rest)
    timeout = args.timeout or (900.0 if args.quick else 4 * 3600.0)
    mode = ("quick run" if args.quick else "full run") + (
        f", arguments replaced for {', '.join(a.partition('=')[0] for a in args.args)}" if args.args else "")

    machine = machine_facts()
    print(f"{mode} of {', '.join(names)} on {machine['host']}: {machine['cores']} cores, "
          f"{machine['memory_gb']:.0f} GB, Python {machine['python']}, commit {machine['commit']}",
          flush=True)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glue-bench-") as tmp:
        for name in names:
            results[name] = run_one(name, arguments[name], Path(tmp), timeout)
    machine["load_average_after"] = round(os.getloadavg()[0], 2)
    report = {"mode": mode, "command": shlex.join(["benchmarks/run_all.py", *sys.argv[1:]]),
              "machine": machine, "wall_seconds": round(time.perf_counter() - started, 1),
              "benchmarks": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(_finite(report), indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(report))
    print()
    print(markdown(report))
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    bad = [n for n, r in results.items() if r["status"] != "ok"]
    if bad:
        print("not ok: " + ", ".join(f"{n} ({results[n]['status']})" for n in bad))
    return 1 if bad else 0


# --- running one benchmark -----------------------------------------------------------------------------


def run_one(name: str, arguments: list[str], tmp: Path, timeout: float) -> dict[str, Any]:
    """The benchmark as a child under GNU time: its figures, wall time, peak RSS, status, output tail."""
    out, report = tmp / f"{name}.json", tmp / f"{name}.time"
    argv = [sys.executable, str(HERE / f"{name}.py"), *arguments, "--json", str(out)]
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    start = time.perf_counter()
    # its own session: a timeout or Ctrl-C stops the benchmark's whole process tree, servers included
    process = subprocess.Popen([GNU_TIME, "-v", "-o", str(report), *argv], cwd=PROJECT_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                               start_new_session=True)
    reader = threading.Thread(target=_echo, args=(process.stdout, tail, name), daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    except BaseException:
        _stop(process)
        raise
    reader.join(timeout=10)
    seconds = time.perf_counter() - start
    code = process.returncode
    result: dict[str, Any] = {"argv": ["python", f"benchmarks/{name}.py", *arguments], "exit_code": code,
                              "wall_seconds": round(seconds, 1), "peak_rss_gb": peak_rss_gb(report)}
    data = None
    if out.exists():
        try:
            data = json.loads(out.read_text())
        except ValueError as exc:
            tail.append(f"(its --json file is not JSON: {exc})")
    figures = list((data or {}).get("figures") or [])
    missed = any(f.get("passed") is False for f in figures)
    if timed_out:
        status = f"failed: stopped after {timeout:.0f} s"
    elif data is None or not figures:
        status = f"failed (exit {code})" + ("" if data is None else ": no figures")
    elif code != 0 and not missed:
        status = f"failed (exit {code})"
    else:
        status = "limit missed" if missed else "ok"
    result["status"] = status
    if status.startswith("failed"):
        result["error_tail"] = list(tail)
        last = " / ".join(line.strip() for line in list(tail)[-3:] if line.strip())
        figures.append(figure("(the benchmark)", None, passed=False, note=f"{status}: {last}"[-400:]))
    result["figures"] = figures
    result["data"] = {k: v for k, v in (data or {}).items() if k != "figures"}
    print(f"=== {name}: {status}, {seconds:.1f} s, peak RSS {result['peak_rss_gb'] or float('nan'):.2f} GB",
          flush=True)
    return result


def _echo(stream: Any, tail: collections.deque[str], name: str) -> None:
    for line in stream:
        print(f"[{name}] {line}", end="", flush=True)
        tail.append(line.rstrip("\n"))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the benchmark's session (its servers and workers too), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def peak_rss_gb(report: Path) -> float | None:
    """GNU time's "Maximum resident set size": the largest single process of the benchmark's tree."""
    text = report.read_text() if report.exists() else ""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return round(int(match.group(1)) / 1024**2, 3) if match else None


# --- the machine -----------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=PROJECT_DIR, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else "?"

    memory = float("nan")
    for line in Path("/proc/meminfo").read_text().splitlines() if Path("/proc/meminfo").exists() else []:
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) / 1024**2
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"host": platform.node(), "cores": os.cpu_count(), "memory_gb": round(memory, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git("rev-parse", "--short", "HEAD") + (" (work tree modified)" if dirty else ""),
            "load_average_before": round(os.getloadavg()[0], 2)}


# --- the table ----------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    """results.md: how and where it ran, each benchmark's status, then every figure."""
    m = report["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"`{report['command']}` ({report['mode']}), {m['date']}, commit {m['commit']}: "
        f"{m['cores']} cores, {m['memory_gb']:g} GB RAM, Python {m['python']}, {m['platform']}; load average "
        f"{m['load_average_before']} before, {m['load_average_after']} after; {report['wall_seconds']:.0f} s "
        "in all. Written by benchmarks/run_all.py.",
        "",
        "| benchmark | status | wall | peak RSS (largest process) |",
        "|---|---|---|---|",
    ]
    for name, r in report["benchmarks"].items():
        rss = f"{r['peak_rss_gb']:.2f} GB" if r["peak_rss_gb"] is not None else "-"
        lines.append(f"| {name} | {_cell(r['status'])} | {r['wall_seconds']:.0f} s | {rss} |")
    lines += ["", "| benchmark | figure | value | peer / limit | peer value | ratio or pass/fail | note |",
              "|---|---|---|---|---|---|---|"]
    for name, r in report["benchmarks"].items():
        for f in r["figures"]:
            lines.append("| " + " | ".join(_cell(c) for c in (name, *row(f))) + " |")
    return "\n".join(lines) + "\n"


def row(f: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    """figure, value, peer / limit, peer value, ratio or pass/fail, note."""
    unit = f.get("unit") or ""
    value = number(f.get("value"), unit)
    peer = f.get("peer") or ""
    limit = f.get("limit") or ""
    against = "; ".join(x for x in (peer, f"limit {limit}" if limit else "") if x) or "-"
    peer_value = number(f.get("peer_value"), unit) if peer else "-"
    verdict = []
    if f.get("ratio") is not None:
        verdict.append(f"×{f['ratio']:.2f}" if f["ratio"] >= 0.01 else f"×{f['ratio']:.1e}")
    if f.get("passed") is not None:
        verdict.append("pass" if f["passed"] else "**FAIL**")
    return f["figure"], value, against, peer_value, ", ".join(verdict) or "-", f.get("note") or ""


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s" and 0 < abs(value) < 1:
        value, unit = value * 1000, "ms"
    if value == 0:
        text = "0"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.01:
        text = f"{value:.3g}"
    else:
        text = f"{value:.1e}"
    return f"{text} {unit}".strip()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " / ")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())

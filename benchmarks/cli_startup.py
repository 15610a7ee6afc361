"""Wall time of `glue --help` (target: under 0.5 s on 2 cores), beside importing each heavy tool.

The CLI must import none of the heavy tools (Feast, MLflow, GE, Evidently, Airflow: 2-7 s each),
so its start-up is Python + click. The peers, each in a fresh `python -c "import X"` process
(--import-runs runs after one warm-up, median), show what a CLI that imported them would cost.
Beside `import feast`: Feast as every glue process but `glue features` imports it, without its
typeguard instrumentation (glue/adapters/feast.py `import_feast`).
Run: `uv run python benchmarks/cli_startup.py [--runs N] [--import-runs N] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import figure, write_json

TARGET_SECONDS = 0.5
TOOLS = ("feast", "mlflow", "evidently", "great_expectations", "airflow")


def time_command(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Run the command `runs` times (after one warm-up) and return each wall time in seconds."""
    subprocess.run(argv, check=True, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def line(label: str, times: list[float]) -> str:
    return (f"{label:24s} median {statistics.median(times) * 1000:7.1f} ms   "
            f"min {min(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms   ({len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--import-runs", type=int, default=5, help="runs of each tool's import (0: none)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this file")
    args = parser.parse_args()
    glue = shutil.which("glue", path=str(Path(sys.executable).parent)) or "glue"
    medians = {}
    for label, argv in (
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("glue --help", [glue, "--help"]),
        ("glue validate --help", [glue, "validate", "--help"]),
    ):
        times = time_command(argv, args.runs)
        medians[label] = statistics.median(times)
        print(line(label, times))
    imports, feast_by_glue = {}, None
    if args.import_runs:
        # Airflow writes its config into AIRFLOW_HOME on import: a throw-away one
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "AIRFLOW_HOME": home, "GX_ANALYTICS_ENABLED": "false"}
            for tool in TOOLS:
                times = time_command([sys.executable, "-c", f"import {tool}"], args.import_runs, env)
                imports[tool] = statistics.median(times)
                print(line(f"import {tool}", times))
            unchecked = "from glue.adapters.feast import import_feast; import_feast(type_checks=False)"
            times = time_command([sys.executable, "-c", unchecked], args.import_runs, env)
            feast_by_glue = statistics.median(times)
            print(line("import feast (glue)", times))
    median = statistics.median(time_command([glue, "--help"], args.runs))
    verdict = "OK" if median < TARGET_SECONDS else "SLOWER THAN TARGET"
    print(f"glue --help median {median:.3f} s vs target {TARGET_SECONDS} s: {verdict}")

    runs = f"median of {args.runs} runs"
    figures = [figure("glue --help", median, "s", limit=("<", TARGET_SECONDS), note=runs),
               figure("glue --help", median, "s", peer="python -c pass", peer_value=medians["python -c pass"],
                      note="the interpreter's own start-up")]
    figures += [figure("glue --help", median, "s", peer=f"python -c 'import {tool}'", peer_value=seconds,
                       note=f"fresh process, median of {args.import_runs} runs")
                for tool, seconds in imports.items()]
    if feast_by_glue is not None:
        figures.append(figure("import feast as glue does", feast_by_glue, "s",
                              peer="python -c 'import feast'", peer_value=imports["feast"],
                              note="without typeguard's instrumentation; `glue features` keeps it"))
    figures.append(figure("glue validate --help", medians["glue validate --help"], "s",
                          limit=("<", TARGET_SECONDS), note=runs))
    write_json(args.json, figures, runs=args.runs, import_runs=args.import_runs, glue_help_seconds=median,
               medians_seconds=medians, import_seconds=imports, target_seconds=TARGET_SECONDS)


if __name__ == "__main__":
    main()

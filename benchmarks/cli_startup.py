"""Wall time of `glue --help` (target: under 0.5 s on 2 cores).

The CLI must import none of the heavy tools (Feast, MLflow, GE, Evidently, Airflow: 2-7 s each),
so its start-up is Python + click. Run: `uv run python benchmarks/cli_startup.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 0.5


def time_command(argv: list[str], runs: int) -> list[float]:
    """Run the command `runs` times (after one warm-up) and return each wall time in seconds."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    glue = shutil.which("glue", path=str(Path(sys.executable).parent)) or "glue"
    for label, argv in (
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("glue --help", [glue, "--help"]),
        ("glue validate --help", [glue, "validate", "--help"]),
    ):
        times = time_command(argv, args.runs)
        print(
            f"{label:24s} median {statistics.median(times) * 1000:7.1f} ms   "
            f"min {min(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms   ({args.runs} runs)"
        )
    median = statistics.median(time_command([glue, "--help"], args.runs))
    verdict = "OK" if median < TARGET_SECONDS else "SLOWER THAN TARGET"
    print(f"glue --help median {median:.3f} s vs target {TARGET_SECONDS} s: {verdict}")


if __name__ == "__main__":
    main()

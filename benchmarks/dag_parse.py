"""Print how long Airflow takes to parse each DAG file (one DagBag per file); target < 1 s each.

The DAG processor re-parses every file every few seconds, so a DAG file must import nothing heavy
at the top: glue's stages import their tools inside the tasks.

    python benchmarks/dag_parse.py [DAGS_FOLDER] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import figure, write_json

TARGET_SECONDS = 1.0
DAGS = Path(__file__).resolve().parent.parent / "dags"

# Runs in a fresh interpreter per file, after Airflow itself is imported: the time is the file's.
_PARSE = """
import sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
folder, path = Path(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
bag = BundleDagBag(path, bundle_path=folder, bundle_name="dags-folder", load_op_links=False)
seconds = time.perf_counter() - t0
print(f"{seconds:.3f} {len(bag.dags)} {len(bag.import_errors)}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dags", nargs="?", type=Path, default=DAGS, help="the DAGs folder (%(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this file")
    args = parser.parse_args()
    dags_folder = args.dags
    files = sorted(p for p in dags_folder.glob("*.py") if p.name != "assets.py")
    worst = 0.0
    figures, parsed = [], {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
        print(f"{'file':28} {'parse s':>8} {'dags':>5} {'errors':>6}")
        for path in files:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _PARSE, str(dags_folder), str(path)], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            wall = time.perf_counter() - t0
            seconds, dags, errors = float(out[-3]), int(out[-2]), int(out[-1])
            worst = max(worst, seconds)
            print(f"{path.name:28} {seconds:8.3f} {dags:5d} {errors:6d}   (process {wall:.1f} s)")
            parsed[path.name] = {"seconds": seconds, "dags": dags, "import_errors": errors,
                                 "process_seconds": wall}
            figures.append(figure(f"parse {path.name}", seconds, "s", limit=("<", TARGET_SECONDS),
                                  passed=False if errors else None,
                                  note=f"{dags} DAGs" + (f", {errors} import errors" if errors else "")))
    verdict = "OK" if worst < TARGET_SECONDS else "TOO SLOW"
    print(f"slowest {worst:.3f} s, target < {TARGET_SECONDS:.0f} s: {verdict}")
    write_json(args.json, figures, files=parsed, slowest_seconds=worst, target_seconds=TARGET_SECONDS)
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of one drift check (monitoring/reports.py) at 10k, 100k and 1M rows x 20 features.

Target: 1M rows x 20 features under 15 s on 2 cores, with the same verdict as on all rows. The
check samples each side to the policy's ``max_rows`` (default 100k, see monitoring/reports.py for
why that is sound); at every size above it (1M by default) this script also runs the check on
every row and compares the verdicts feature by feature.

The data: 14 numerical features (normal, log-normal, Poisson counts) and 6 categorical ones;
the current window shifts 5 of them clearly (past the 0.1 threshold) and 3 slightly (well
under it), so both a "drifted" and a "not drifted" verdict are exercised on every size.

    uv run python benchmarks/monitoring.py [--sizes 10000,100000,1000000] [--no-full] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import figure, write_json

# This file is named like the package it measures: drop its folder from the import path, so
# `import monitoring` finds the project's monitoring/ package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

N_NUMERICAL = 14
N_CATEGORICAL = 6
CLEAR_SHIFT = {"num_00": 0.4, "num_01": 0.3, "num_02": 0.25, "num_03": 0.2}  # in standard deviations
SLIGHT_SHIFT = {"num_04": 0.03, "num_05": 0.02, "num_06": 0.02}
TARGET_SECONDS = 15.0  # 1M rows x 20 features on 2 cores


def make_window(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    """One window of synthetic model inputs plus a score column."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i in range(N_NUMERICAL):
        name = f"num_{i:02d}"
        shift = (CLEAR_SHIFT.get(name, 0.0) + SLIGHT_SHIFT.get(name, 0.0)) if drifted else 0.0
        if i % 3 == 0:
            data[name] = rng.normal(shift, 1.0, rows)
        elif i % 3 == 1:
            data[name] = np.exp(rng.normal(shift * 0.8, 0.8, rows))
        else:
            data[name] = rng.poisson(12 * (1 + shift * 0.3), rows).astype("float64")
    for i in range(N_CATEGORICAL):
        p = np.array([0.5, 0.3, 0.15, 0.05])
        if drifted and i == 0:
            p = np.array([0.3, 0.3, 0.25, 0.15])  # a clear change of mix
        data[f"cat_{i}"] = rng.choice(np.array(["a", "b", "c", "d"]), size=rows, p=p)
    data["prediction"] = 1 / (1 + np.exp(-rng.normal(-3 + (0.3 if drifted else 0.0), 1.0, rows)))
    return pd.DataFrame(data)


def run(rows: int, max_rows: int, out: Path) -> tuple[float, object]:
    from monitoring import reports
    from monitoring.policy import DriftPolicy

    reference = make_window(rows, seed=1, drifted=False)
    current = make_window(rows, seed=2, drifted=True)
    features = [c for c in reference.columns if c != "prediction"]
    policy = DriftPolicy(max_rows=max_rows)
    start = time.perf_counter()
    finding, _ = reports.drift_report(reference, current, features, policy, out, prediction="prediction")
    return time.perf_counter() - start, finding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--no-full", action="store_true",
                        help="skip the unsampled comparison at the sizes above the policy's max_rows")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from monitoring.policy import DriftPolicy

    default_max = DriftPolicy().max_rows
    start = time.perf_counter()
    from monitoring import reports

    reports.import_evidently()
    import_seconds = time.perf_counter() - start
    print(f"import evidently: {import_seconds:.1f} s (once per process, not counted below)")
    print(f"{'rows':>9}  {'features':>8}  {'seconds':>7}  {'drifted':>7}  {'share':>5}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        run(2000, default_max, Path(tmp) / "warmup")
        results, seconds_of, full_runs = {}, {}, {}
        for rows in sizes:
            seconds, finding = run(rows, default_max, Path(tmp) / f"{rows}")
            results[rows], seconds_of[rows] = finding, seconds
            print(f"{rows:>9}  {N_NUMERICAL + N_CATEGORICAL:>8}  {seconds:>7.1f}  "
                  f"{len(finding.drifted_columns):>7}  {finding.share:>5.2f}  "
                  f"{'drift' if finding.dataset_drift else 'no drift'}"
                  f"{' (sampled to ' + str(default_max) + ' rows per side)' if rows > default_max else ''}")
        for big in sorted(rows for rows in sizes if rows > default_max and not args.no_full):
            seconds, full = run(big, big, Path(tmp) / f"full-{big}")
            sampled = results[big]
            same = (full.dataset_drift == sampled.dataset_drift
                    and full.drifted_columns == sampled.drifted_columns
                    and full.prediction_drifted == sampled.prediction_drifted)
            print(f"{big:>9}  {N_NUMERICAL + N_CATEGORICAL:>8}  {seconds:>7.1f}  "
                  f"{len(full.drifted_columns):>7}  {full.share:>5.2f}  "
                  f"{'drift' if full.dataset_drift else 'no drift'} (all rows)")
            worst = max(abs(full.scores[c] - sampled.scores[c]) for c in full.scores)
            print(f"same verdict on all {big} rows as on the sample: {'yes' if same else 'NO'} "
                  f"(drifted: {', '.join(full.drifted_columns)}; largest score difference {worst:.4f})")
            full_runs[big] = {"seconds": seconds, "same_verdict": same, "largest_score_difference": worst,
                              "drifted_columns": list(full.drifted_columns), "share": full.share}

    columns = N_NUMERICAL + N_CATEGORICAL
    figures = [figure("import evidently", import_seconds, "s", note="once per process, not in the checks")]
    for rows in sizes:
        finding, full = results[rows], full_runs.get(rows)
        sampled = rows > default_max
        name = f"drift check, {rows:,} rows x {columns}"
        name += f", sampled to {default_max:,}" if sampled else ""
        verdict = (f"{len(finding.drifted_columns)} drifted: "
                   f"{'drift' if finding.dataset_drift else 'no drift'}")
        figures.append(figure(name, seconds_of[rows], "s", limit=("<", TARGET_SECONDS),
                              peer="the same check on all rows" if full else None,
                              peer_value=full["seconds"] if full else None,
                              note=verdict + ("" if sampled else "; no sampling at this size")))
        if full:
            figures.append(figure(f"same verdict as on all {rows:,} rows", None, passed=full["same_verdict"],
                                  note=f"largest score difference {full['largest_score_difference']:.4f}"))
    write_json(args.json, figures, import_evidently_seconds=import_seconds, max_rows=default_max,
               columns=columns, target_seconds=TARGET_SECONDS,
               sampled={rows: {"seconds": seconds_of[rows], "dataset_drift": f.dataset_drift,
                               "drifted_columns": list(f.drifted_columns), "share": f.share}
                        for rows, f in results.items()},
               full=full_runs)


if __name__ == "__main__":
    main()

"""Markdown for a pull request comment or a job summary: the gate's verdict and the metrics diff.

    python .github/scripts/gate_comment.py metrics/evaluation.json [metrics-diff.md] > comment.md

Reads what `glue evaluate` wrote (metrics/evaluation.json: the challenger and champion scored on the
same fresh window, the paired-bootstrap delta and the verdict) and, if given, the Markdown table of
`dvc metrics diff --md`. Standard library only: it runs before or without the project's install.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _number(value: object, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def render(evaluation: dict, metrics_diff: str = "") -> str:
    decision = evaluation.get("decision", {})
    passed = bool(decision.get("passed"))
    challenger = evaluation.get("challenger") or {}
    champion = evaluation.get("champion") or {}
    lines = [
        f"## Model gate: {'✅ passes — the challenger would be promoted' if passed else '❌ rejected'}",
        "",
        f"**{evaluation.get('model_name', 'model')}**: challenger version "
        f"{challenger.get('version', '?')} vs champion "
        f"{champion.get('version', 'none') if champion else 'none'}, both scored on "
        f"{evaluation.get('window_start', '?')[:10]} .. {evaluation.get('window_end', '?')[:10]} "
        f"({evaluation.get('rows', '?')} transactions, {evaluation.get('fraud', '?')} fraud).",
        "",
        "| metric | challenger | champion |",
        "|---|---|---|",
    ]
    ours, theirs = decision.get("challenger") or {}, decision.get("champion") or {}
    for metric in sorted(set(ours) | set(theirs)):
        lines.append(f"| {metric} | {_number(ours.get(metric))} | {_number(theirs.get(metric))} |")
    if decision.get("delta") is not None:
        low, high = _number(decision.get("ci_low"), "+.4f"), _number(decision.get("ci_high"), "+.4f")
        lines += ["", f"Delta {decision['delta']:+.4f}, interval {low} .. {high}, "
                      f"P(better by the margin) = {_number(decision.get('prob_better'), '.3f')}."]
    lines += ["", f"Reason: {decision.get('reason', '(none)')}"]
    if decision.get("failed_floors"):
        lines.append(f"Failed floors: {', '.join(decision['failed_floors'])}")
    if metrics_diff.strip():
        lines += ["", "### `dvc metrics diff` against the base branch", "", metrics_diff.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    evaluation = json.loads(Path(argv[0]).read_text())
    diff = Path(argv[1]).read_text() if len(argv) > 1 and Path(argv[1]).is_file() else ""
    sys.stdout.write(render(evaluation, diff))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

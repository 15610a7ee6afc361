"""Check results as Prometheus metrics, in the text exposition format.

Written as a ``.prom`` file that node_exporter's textfile collector (or any scraper of files)
picks up: dashboards and alert rules then see drift share, per-feature drift scores, quality and
the retrain decision of the latest check without talking to MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

PREFIX = "glue_monitoring_"


def render(samples: Iterable[tuple[str, str, dict[str, str], float | None]]) -> str:
    """Text format for (name, help, labels, value) samples; None values are left out."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, help_text, labels, value in samples:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        full = PREFIX + name
        if full not in seen:
            seen.add(full)
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        series = f"{full}{{{label_text}}}" if label_text else full
        lines.append(f"{series} {float(value):.6g}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

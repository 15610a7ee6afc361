"""What every benchmark writes with --json: its figures, each beside its peer or its limit.

A figure is one number the benchmark measured (``value`` in ``unit``), with what it is measured
against in the same run: a peer (another tool doing the same job, or a floor: ``peer`` names it,
``peer_value`` is its number, ``ratio`` = value / peer_value) and/or a limit (``limit`` says it,
``passed`` is the verdict). benchmarks/run_all.py renders every benchmark's figures into one table;
the rest of a benchmark's JSON is its own numbers, in its own shape.

Imported by the scripts of this folder before they drop the folder from ``sys.path``.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path
from typing import Any

_COMPARE = {"<": operator.lt, "<=": operator.le, ">=": operator.ge, ">": operator.gt}


def figure(name: str, value: float | None, unit: str = "", *, peer: str | None = None,
           peer_value: float | None = None, limit: tuple[str, float] | None = None,
           ratio_limit: tuple[str, float] | None = None, passed: bool | None = None,
           note: str = "") -> dict[str, Any]:
    """One row of the table: `value`, its peer and ratio, its limit and verdict.

    `limit` is ``(op, bound)`` on the value (``("<", 0.5)``: under half a second), `ratio_limit` the
    same on value / peer_value; `passed` given explicitly is a verdict of the benchmark's own (a
    same-verdict or same-frame check) and is combined with the limits. None: no verdict.
    """
    value = _number(value)
    peer_value = _number(peer_value)
    ratio = value / peer_value if value is not None and peer_value else None
    verdicts = [] if passed is None else [bool(passed)]
    limits = []
    for (op, bound), subject, text in ((limit or (None, None), value, "{op} {bound:g} {unit}"),
                                       (ratio_limit or (None, None), ratio, "ratio {op} {bound:g}")):
        if op is None:
            continue
        limits.append(text.format(op=op, bound=bound, unit=unit).strip())
        verdicts.append(subject is not None and _COMPARE[op](subject, bound))
    return {"figure": name, "value": value, "unit": unit, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "limit": "; ".join(limits) or None,
            "passed": all(verdicts) if verdicts else None, "note": note}


def write_json(path: Path | None, figures: list[dict[str, Any]], **numbers: Any) -> None:
    """The benchmark's --json file: its figures, then the rest of its numbers."""
    if path is None:
        return
    Path(path).write_text(json.dumps({"figures": figures, **numbers}, indent=2, default=_plain) + "\n")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _plain(value: Any) -> Any:
    """numpy scalars and anything else json cannot write."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)

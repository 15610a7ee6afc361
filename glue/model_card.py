"""The model card of a registered version: markdown for people, JSON for tools, both artifacts of
its training run (``model_card.md``, ``model_card.json``), browsable in the MLflow UI.

Why here and not a template in the project: every fact on it is one glue already holds (the
params, the training window and row counts, the feature service, the held-out metrics, the gate's
verdict); the project adds only what it alone knows (params.yaml ``card:`` — intended use,
limitations, a segment column). What nobody recorded is written "unknown", never guessed.

Written twice: by training (the gate still pending) and again by the gate once it has decided,
with its verdict and the approver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from glue import contract

if TYPE_CHECKING:
    from glue.settings import ModelSpec

CARD_JSON = contract.MODEL_CARD_JSON
CARD_MARKDOWN = contract.MODEL_CARD_MARKDOWN
UNKNOWN = "unknown"
PENDING = {"decision": "pending (not gated yet)", "approver": "none yet"}


def build_card(model: ModelSpec, *, version: str, run_id: str, tags: dict[str, str],
               metrics: dict[str, float], segments: dict[str, Any]) -> dict[str, Any]:
    """The card's facts, from the training's own record (`tags`: the version's lineage tags;
    `segments`: glue.training.segment_metrics)."""
    card = model.card
    return {
        "model": {"name": model.name, "version": version, "task": model.task, "label": model.label.field,
                  "train_run_id": run_id, "estimator": model.estimator.model_dump()},
        "intended_use": card.intended_use or _unset("intended_use", model),
        "limitations": card.limitations or _unset("limitations", model),
        "data": {"train_window": [tags.get(contract.TRAIN_START, UNKNOWN),
                                  tags.get(contract.TRAIN_END, UNKNOWN)],
                 "validation_window": [tags.get(contract.VALIDATION_START, UNKNOWN),
                                       tags.get(contract.VALIDATION_END, UNKNOWN)],
                 "train_rows": _int(metrics.get("train_rows")),
                 "train_rows_available": _int(metrics.get("train_rows_available")),
                 "validation_rows": _int(metrics.get("validation_rows")),
                 "sample": tags.get(contract.TRAIN_SAMPLE, UNKNOWN),
                 "dvc_data_version": tags.get(contract.DVC_DATA_VERSION, UNKNOWN)},
        "features": {"feature_service": tags.get(contract.FEATURE_SERVICE, UNKNOWN),
                     "columns": contract.feature_columns(tags)},
        "metrics": {"overall": {k: v for k, v in sorted(metrics.items()) if not k.endswith("_rows")},
                    "by_segment": segments},
        "gate": dict(PENDING),
        "code": {"git_commit": tags.get(contract.GIT_COMMIT, UNKNOWN),
                 "git_dirty": tags.get(contract.GIT_DIRTY, UNKNOWN)},
    }


def with_gate(card: dict[str, Any], gate: dict[str, str]) -> dict[str, Any]:
    """The card once the gate has decided: its verdict, reason, numbers and the approver."""
    return {**card, "gate": gate}


def render_markdown(card: dict[str, Any]) -> str:
    """The card for people (the MLflow UI shows it among the run's artifacts)."""
    m, data, gate = card["model"], card["data"], card["gate"]
    lines = [f"# Model card: {m['name']} version {m['version']}", "",
             f"- **Task**: {m['task']} of `{m['label']}`",
             f"- **Estimator**: {m['estimator']['type']} {m['estimator'].get('params') or ''}",
             f"- **Training run**: `{m['train_run_id']}`", "",
             "## Intended use", "", str(card["intended_use"]), "",
             "## Limitations", "", str(card["limitations"]), "",
             "## Data", "",
             f"- Training window: {data['train_window'][0]} .. {data['train_window'][1]} "
             f"({data['train_rows']} rows fitted of {data['train_rows_available']}; {data['sample']})",
             f"- Validation window: {data['validation_window'][0]} .. {data['validation_window'][1]} "
             f"({data['validation_rows']} rows)",
             f"- DVC data version: `{data['dvc_data_version']}`", "",
             "## Features", "", f"Feature service `{card['features']['feature_service']}`: "
             + ", ".join(f"`{c}`" for c in card["features"]["columns"]), "",
             "## Metrics (held-out validation rows)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_number(v)} |" for k, v in card["metrics"]["overall"].items()]
    segments = card["metrics"]["by_segment"]
    if segments.get("error"):
        lines += ["", f"By segment: {UNKNOWN} ({segments['error']})."]
    elif segments:
        names = sorted({k for s in segments["segments"].values() if isinstance(s["metrics"], dict)
                        for k in s["metrics"]})
        lines += ["", f"### By `{segments['column']}`", "",
                  "| segment | rows | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for value, s in segments["segments"].items():
            cells = ([_number(s["metrics"].get(n)) for n in names] if isinstance(s["metrics"], dict)
                     else [s["metrics"]] + [""] * (len(names) - 1))
            lines.append(f"| {value} | {s['rows']} | " + " | ".join(cells) + " |")
    else:
        lines += ["", "By segment: unknown (params.yaml `card.segment_column` not set)."]
    lines += ["", "## Gate", ""] + [f"- **{k}**: {v}" for k, v in gate.items()]
    code = card["code"]
    lines += ["", "## Code", "", f"- Commit `{code['git_commit']}` (dirty tree: {code['git_dirty']})", ""]
    return "\n".join(lines)


def _unset(field: str, model: ModelSpec) -> str:
    return f"{UNKNOWN} (params.yaml models.{model.name}.card.{field} is not set)"


def _int(value: float | None) -> int | str:
    return UNKNOWN if value is None else int(value)


def _number(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def log_card(run_id: str, card: dict[str, Any]) -> None:
    """Write both forms of the card to the training run (replacing an earlier one)."""
    from glue.adapters import mlflow

    mlflow.log_run_dict(run_id, card, CARD_JSON)
    mlflow.log_run_text(run_id, render_markdown(card), CARD_MARKDOWN)


def record_gate(run_id: str, gate: dict[str, str]) -> None:
    """Complete the card of the training run `run_id` with the gate's verdict; a run without a card
    (trained before cards existed) is left as it is."""
    from glue.adapters import mlflow

    card = mlflow.read_run_json(run_id, CARD_JSON)
    if card is not None:
        log_card(run_id, with_gate(card, gate))

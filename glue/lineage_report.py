"""`glue lineage`: the one lineage record of a model version, read back from the registry, and the
models that use a Feast feature view.

Why a module apart from glue/lineage.py: that one gathers the facts at training time and imports
no MLflow; this one reads them back (the version's tags, its training run's params and metrics,
the gate's verdict tags) and adds what only the running system knows: which aliases point at the
version and how many predictions the server logged for it, per arm. Everything a tag did not
record is reported as "unknown", never guessed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from glue import contract
from glue.errors import GlueError

if TYPE_CHECKING:
    from glue.settings import Settings

UNKNOWN = "unknown"


def model_lineage(settings: Settings, model_uri: str) -> dict[str, Any]:
    """The lineage record of the version `model_uri` names (models:/<name>@<alias> or /<version>)."""
    from glue.adapters import mlflow

    mlflow.configure(settings)
    ref = mlflow.resolve_model_uri(model_uri)
    tags = ref.tags
    run_id = tags.get(contract.TRAIN_RUN_ID) or ref.run_id
    run_tags, _, metrics = mlflow.run_data(run_id) if run_id else ({}, {}, {})
    refs = contract.feature_refs(tags)
    gate = {key.removeprefix(contract.GATE_TAG_PREFIX): value for key, value in sorted(tags.items())
            if key.startswith(contract.GATE_TAG_PREFIX)}
    return {
        "model": {"uri": model_uri, "name": ref.name, "version": ref.version,
                  "aliases": mlflow.version_aliases(ref.name, ref.version),
                  "task": tags.get(contract.TASK, UNKNOWN), "label": tags.get(contract.LABEL, UNKNOWN),
                  "train_run_id": run_id or UNKNOWN, "logged_model_id": ref.model_id or UNKNOWN},
        "data": {"dvc_data_version": tags.get(contract.DVC_DATA_VERSION, UNKNOWN),
                 "dvc_data_path": tags.get(contract.DVC_DATA_PATH, UNKNOWN),
                 "dvc_remote": tags.get(contract.DVC_REMOTE, UNKNOWN),
                 "files": tags.get(contract.DVC_DATA_FILES, UNKNOWN),
                 "validated_batches": _listed(tags.get(contract.VALIDATION_BATCH_DAYS)),
                 "validation_summary": tags.get(contract.VALIDATION_SUMMARY, UNKNOWN),
                 "validation_summary_sha256": tags.get(contract.VALIDATION_SUMMARY_SHA256, UNKNOWN)},
        "features": {"feature_service": tags.get(contract.FEATURE_SERVICE, UNKNOWN),
                     "feature_views": sorted({r.split(":", 1)[0] for r in refs}),
                     "feature_refs": refs, "columns": contract.feature_columns(tags)},
        "code": {"git_commit": tags.get(contract.GIT_COMMIT, UNKNOWN),
                 "git_dirty": tags.get(contract.GIT_DIRTY, UNKNOWN),
                 "profile": run_tags.get(contract.PROFILE, UNKNOWN)},
        "training_window": {"train_start": tags.get(contract.TRAIN_START, UNKNOWN),
                            "train_end": tags.get(contract.TRAIN_END, UNKNOWN),
                            "validation_start": tags.get(contract.VALIDATION_START, UNKNOWN),
                            "validation_end": tags.get(contract.VALIDATION_END, UNKNOWN),
                            "sample": tags.get(contract.TRAIN_SAMPLE, UNKNOWN)},
        "params": _json_or_unknown(tags.get(contract.TRAIN_PARAMS)),
        "metrics": {k: metrics[k] for k in sorted(metrics) if not k.startswith(mlflow.EVALUATE_PREFIX)},
        "gate": gate or {"decision": "not gated yet"},
        "approver": _approver(gate),
        # the sample of the training set monitoring compares each day with (glue/monitor.py)
        "drift_reference": f"runs:/{run_id}/{contract.REFERENCE_ARTIFACT}" if run_id else UNKNOWN,
        "served": served_counts(settings, ref.name, ref.version),
    }


def feature_view_usage(settings: Settings, view: str) -> dict[str, Any]:
    """Which registered models and versions were trained on features of the Feast view `view`:
    the feature discovery a feature store promises, answered from the registry's lineage tags."""
    from glue.adapters import mlflow

    mlflow.configure(settings)
    users = []
    for ref in mlflow.all_versions():
        features = [r.split(":", 1)[1] for r in contract.feature_refs(ref.tags) if r.split(":", 1)[0] == view]
        if features:
            users.append({"model": ref.name, "version": ref.version,
                          "aliases": mlflow.version_aliases(ref.name, ref.version),
                          "feature_service": ref.tags.get(contract.FEATURE_SERVICE, UNKNOWN),
                          "features": features})
    if not users:
        known = _feast_views(settings)
        if view not in known:
            raise GlueError(f"feature view '{view}': no such view in the Feast repository "
                            f"({settings.feast_repo}); its views: {', '.join(known) or 'none'}")
    return {"feature_view": view, "used_by": users}


def served_counts(settings: Settings, model_name: str, model_version: str) -> dict[str, int]:
    """Prediction-log lines of one version, per arm (champion, challenger, shadow)."""
    from glue.prediction_log import log_folder

    counts: Counter[str] = Counter()
    wanted = (model_name, model_version)
    for path in sorted(log_folder(settings).glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if (record.get("model_name"), str(record.get("model_version"))) == wanted:
                    counts[str(record.get("arm", UNKNOWN))] += 1
    return dict(sorted(counts.items()))


def render(report: dict[str, Any]) -> str:
    """The report as indented text, section by section (the --json output holds the same)."""
    lines: list[str] = []
    for section, values in report.items():
        lines.append(f"{section}:")
        if isinstance(values, dict):
            if not values:
                lines.append("  none")
            for key, value in values.items():
                lines.append(f"  {key}: {_text(value)}")
        elif isinstance(values, list):
            lines += [f"  - {_text(v)}" for v in values] or ["  none"]
        else:
            lines.append(f"  {values}")
    return "\n".join(lines)


def render_usage(report: dict[str, Any]) -> str:
    """feature_view_usage as text: one line per model version."""
    users = report["used_by"]
    lines = [f"feature view {report['feature_view']}: "
             + (f"used by {len(users)} model version(s)" if users else "used by no model version")]
    for u in users:
        aliases = f" ({', '.join(u['aliases'])})" if u["aliases"] else ""
        lines.append(f"  {u['model']} version {u['version']}{aliases} via {u['feature_service']}: "
                     f"{', '.join(u['features'])}")
    return "\n".join(lines)


def _approver(gate: dict[str, str]) -> str:
    """Who decided: the person's whole answer where one gave it, else the automatic gate."""
    if "approval" in gate:
        return gate["approval"]
    if "approver" in gate:
        return gate["approver"]
    if gate.get("decision") == contract.GATE_AWAITING_APPROVAL:
        return "awaiting a person's approval"
    if "decision" in gate:
        return contract.AUTOMATIC_APPROVER
    return "none yet"


def _listed(value: str | None) -> list[str] | str:
    if value is None:
        return UNKNOWN
    return [v for v in value.split(",") if v and v != "none"]


def _json_or_unknown(value: str | None) -> Any:
    if value is None:
        return UNKNOWN
    try:
        return json.loads(value)
    except ValueError:
        return value


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _feast_views(settings: Settings) -> list[str]:
    from glue.adapters import feast

    store = feast.open_store(settings)
    return sorted(fv.name for fv in [*store.list_feature_views(), *store.list_on_demand_feature_views()])

"""The assets (data-aware triggers) shared by the mlops-glue DAGs.

Declarations only, so any DAG file can import them without cost. ``FEATURES`` marks fresh
feature snapshots in the Feast online store (emitted by glue_features); each model's monitoring
DAG runs on it. An event on a model's :func:`retrain_request` (emitted by its monitoring DAG when
drift or quality decay calls for it) starts that model's training DAG.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset

FEATURES = Asset("glue://features")


def retrain_request(model: str) -> Asset:
    """The asset whose events start `model`'s training DAG: glue://<model>/retrain-request."""
    return Asset(f"glue://{model}/retrain-request")


# Shared by every mlops-glue DAG: start in the past, never backfill, retry transient failures once.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ["mlops-glue"]
DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=30)}


def model_dag_args(dag_id: str, model: dict, doc: str) -> dict:
    """The @dag arguments every per-model DAG shares: the defaults above, one run at a time, the
    model's name as a tag and its doc (a template of dag_id, model, task and feature_service)."""
    return {"dag_id": dag_id, "start_date": START_DATE, "catchup": False, "max_active_runs": 1,
            "default_args": DEFAULT_ARGS, "tags": [*TAGS, model["name"]],
            "doc_md": doc.format(dag_id=dag_id, model=model["name"], task=model["task"],
                                 feature_service=model["feature_service"])}

"""The assets (data-aware triggers) shared by the mlops-glue DAGs.

Declarations only, so any DAG file can import them without cost. An asset event on
``RETRAIN_REQUEST`` (emitted by glue_monitoring when drift or quality decay calls for it) starts
glue_training; ``FEATURES`` marks fresh feature snapshots in the Feast online store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset

RETRAIN_REQUEST = Asset("glue://retrain-request")
FEATURES = Asset("glue://features")

# Shared by every mlops-glue DAG: start in the past, never backfill, retry transient failures once.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ["mlops-glue"]
DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=30)}

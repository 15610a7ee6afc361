"""The tasks every mlops-glue DAG starts with: the validation gate, then the feature refresh.

Defined once and called inside each DAG (calling a ``@task`` function in a DAG adds it there).
Each task calls one glue function, the same one `glue validate-batches` / `glue features` and
the `dvc.yaml` stages run; imports are inside the tasks, so parsing a DAG file stays light.
"""

from __future__ import annotations

from airflow.sdk import task
from assets import FEATURES


@task
def validate() -> str:
    """Great Expectations gate: validated/ gets the good batches, quarantine/ the rest."""
    from glue import validation
    from glue.adapters.airflow import run_stage

    return run_stage(validation.validate_batches)


@task(outlets=[FEATURES])
def features() -> str:
    """Snapshot aggregates, `feast apply`, materialize to the online store."""
    from glue import features
    from glue.adapters.airflow import run_stage

    return run_stage(features.build_features)

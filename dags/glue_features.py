"""
### glue_features: today's batches into the feature store

Daily: the validation gate (Great Expectations) accepts or quarantines every raw transaction batch,
then the feature stage builds the daily snapshot aggregates, runs `feast apply` and materializes
them to the online store, and marks the asset `glue://features`.

Each task calls one glue function (the same one `glue validate-batches` / `glue features` and the
`dvc.yaml` stages run). A rejected batch fails `validate` without retries; see the quarantine
folder named in the task log.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from assets import DEFAULT_ARGS, FEATURES, START_DATE, TAGS


@dag(
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def glue_features():
    @task
    def validate() -> str:
        """Great Expectations gate: validated/ gets the good batches, quarantine/ the rest."""
        from glue import validation
        from glue.orchestration import run_stage

        return run_stage(validation.validate_batches)

    @task(outlets=[FEATURES])
    def features() -> str:
        """Snapshot aggregates, `feast apply`, materialize to the online store."""
        from glue import features
        from glue.orchestration import run_stage

        return run_stage(features.build_features)

    validate() >> features()


glue_features()

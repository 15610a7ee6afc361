"""
### glue_features: today's batches into the feature store

Daily, for the whole project: the validation gate (Great Expectations) accepts or quarantines
every raw event batch, then the feature stage builds the project's feature tables, runs
`feast apply` and materializes them to the online store, and marks the asset `glue://features`,
which starts every model's monitoring DAG (`glue_monitoring__<model>`).

Each task calls one glue function (the same one `glue validate-batches` / `glue features` and the
`dvc.yaml` stages run). A rejected batch fails `validate` without retries; see the quarantine
folder named in the task log.
"""

from __future__ import annotations

from airflow.sdk import dag
from assets import DEFAULT_ARGS, START_DATE, TAGS
from shared_tasks import features, validate


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
    validate() >> features()


glue_features()

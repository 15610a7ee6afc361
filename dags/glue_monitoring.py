"""
### glue_monitoring: should the model be retrained?

Daily: validate the new batches, refresh the features, then check the champion on the day of the
run (Evidently data drift and the quality of the labels known by then). When the decision is
*retrain*, `request_retrain` emits the asset `glue://retrain-request`, which starts
`glue_training`; otherwise it is skipped and nothing else happens.

The check's report is in the `check` task's log and XCom; the drift report is an Evidently HTML.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from assets import DEFAULT_ARGS, RETRAIN_REQUEST, START_DATE, TAGS
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
def glue_monitoring():
    @task
    def check(ds: str | None = None) -> dict:
        """Drift and delayed-label quality on the run's day; the decision says whether to retrain."""
        from glue.orchestration import run_check

        return run_check(ds)

    @task.short_circuit
    def retrain_needed(decision: dict) -> bool:
        """Skip `request_retrain` unless the check decided to retrain."""
        return bool(decision["retrain"])

    @task(outlets=[RETRAIN_REQUEST])
    def request_retrain(decision: dict) -> str:
        """Emit the asset event that starts glue_training."""
        return decision["summary"]

    decision = check()
    validate() >> features() >> decision
    retrain_needed(decision) >> request_retrain(decision)


glue_monitoring()

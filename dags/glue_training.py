"""
### glue_training: train a challenger and gate it against the champion

Runs weekly, and whenever `glue_monitoring` requests a retrain (asset `glue://retrain-request`).

1. **validate** - the Great Expectations gate over the raw batches;
2. **features** - snapshot aggregates, `feast apply`, materialize online;
3. **train** - fit on the Feast point-in-time training set, log to MLflow, register the new
   version with alias `challenger`;
4. **evaluate** - score challenger and champion on the same fresh window (paired bootstrap);
5. **promote** - move alias `champion` only if the challenger passed (see the MLflow model
   version's `glue.gate.*` tags for the numbers and the reason).

Each task calls one glue function, the same the `glue` CLI and `dvc repro` run.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from assets import DEFAULT_ARGS, RETRAIN_REQUEST, START_DATE, TAGS
from shared_tasks import features, validate


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),  # Mondays 03:00 UTC
        assets=RETRAIN_REQUEST,
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def glue_training():
    @task
    def train() -> str:
        """Fit, log to MLflow, register the new version as `challenger`."""
        from glue import training
        from glue.orchestration import run_stage

        return run_stage(training.train)

    @task
    def evaluate() -> str:
        """Challenger vs champion on the same window: the gate's verdict, kept for `promote`."""
        from glue import promotion
        from glue.orchestration import run_stage

        return run_stage(promotion.evaluate)

    @task
    def promote() -> dict:
        """Move `champion` to the challenger if the verdict says so (re-checked under a lock)."""
        from glue import promotion
        from glue.orchestration import run_stage

        return run_stage(promotion.promote_evaluated,
                         keep=("promoted", "challenger_version", "champion_after"))

    validate() >> features() >> train() >> evaluate() >> promote()


glue_training()

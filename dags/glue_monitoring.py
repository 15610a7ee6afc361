"""One monitoring DAG per model of params.yaml: ``glue_monitoring__<model>``.

Each checks that model's champion after every feature refresh (asset ``glue://features``, which
glue_features emits daily) and, when the check decides to retrain, emits the asset
``glue://<model>/retrain-request`` that starts ``glue_training__<model>``. Built in a loop from
the model specs, as Airflow's dynamic DAG generation docs show.
"""

from __future__ import annotations

from airflow.sdk import dag, get_parsing_context, task
from assets import FEATURES, model_dag_args, retrain_request
from project import models, monitoring_dag_id

DOC = """
### {dag_id}: should `{model}` be retrained?

`{model}`: {task} on the Feast feature service `{feature_service}` (params.yaml `models:`).
Runs after every feature refresh (asset `glue://features`, from `glue_features`).

1. **check** - the champion on the run's day (the newest validated day when the run has none):
   Evidently drift of its feature columns and of its output against its own training set, and
   its quality on the labels known by then, under the model's monitoring policy;
2. **retrain_needed** - skips the rest unless the check decided to retrain;
3. **request_retrain** - emits the asset `glue://{model}/retrain-request`, which starts
   `glue_training__{model}`.

The check's report is in the `check` task's log and XCom; the reports (Evidently HTML,
decision.json) are under `reports/monitoring/{model}/<day>/` and in the MLflow experiment of the
model's monitoring.
"""


def monitoring_dag(model: dict) -> None:
    """Declare the monitoring DAG of one model."""
    name = model["name"]
    dag_id = monitoring_dag_id(name)

    @dag(
        schedule=FEATURES,
        **model_dag_args(dag_id, model, DOC),
    )
    def glue_monitoring():
        @task
        def check(ds: str | None = None) -> dict:
            """Drift and delayed-label quality on the run's day; the decision says whether to retrain."""
            from glue.adapters.airflow import run_check

            return run_check(name, ds)

        @task.short_circuit
        def retrain_needed(decision: dict) -> bool:
            """Skip `request_retrain` unless the check decided to retrain."""
            return bool(decision["retrain"])

        @task(outlets=[retrain_request(name)])
        def request_retrain(decision: dict) -> str:
            """Emit the asset event that starts this model's training DAG."""
            return decision["summary"]

        decision = check()
        retrain_needed(decision) >> request_retrain(decision)

    glue_monitoring()


_parsing = get_parsing_context().dag_id  # a task run parses the file for its own DAG only
for _model in models():
    if _parsing is None or _parsing == monitoring_dag_id(_model["name"]):
        monitoring_dag(_model)

"""One training DAG per model of params.yaml: ``glue_training__<model>``.

Each trains a challenger and gates it against that model's champion, weekly (Mondays 03:00 UTC)
and whenever the model's monitoring DAG requests a retrain (asset
``glue://<model>/retrain-request``). Built in a loop from the model specs, as Airflow's dynamic DAG
generation docs show; each task calls one glue function, the same `glue train --model <model>`
and `dvc repro` run.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_parsing_context, task
from assets import model_dag_args, retrain_request
from project import models, training_dag_id
from shared_tasks import features, validate

DOC = """
### {dag_id}: train a challenger of `{model}` and gate it against the champion

`{model}`: {task} on the Feast feature service `{feature_service}` (params.yaml `models:`).
Runs on Mondays 03:00 UTC, and whenever `glue_monitoring__{model}` requests a retrain
(asset `glue://{model}/retrain-request`).

1. **refresh_needed** - fresh features first (validate, features), unless they are fresh
   already: a retrain request comes right after glue_features refreshed them, and a run with
   conf `{{"refresh": false}}` says so;
2. **validate** - the Great Expectations gate over the raw batches;
3. **features** - the project's tables, `feast apply`, materialize online;
4. **train** - fit on the Feast point-in-time training set, log to MLflow, register the new
   version of `{model}` with alias `challenger`;
5. **evaluate** - score challenger and champion on the same fresh window (paired bootstrap);
{approval}6. **promote** - move alias `champion` only if the challenger passed (see the MLflow model
   version's `glue.gate.*` tags for the numbers and the reason).

Each task calls one glue function, the same the `glue` CLI and `dvc repro` run.
"""

APPROVAL_DOC = """   **ask_approval** / **approve** - params.yaml `approval.by: person`: where the profile
   asks for a person, a challenger that passed waits in `approve` (Browse > Required Actions)
   until someone chooses Approve or Reject (no answer in {hours:g} h: Reject); the answer, who
   gave it and the comment go on the model version and its card;
"""
APPROVE_TASK, APPROVE, DECLINE = "approve", "Approve", "Reject"  # glue.adapters.airflow's names


def approval_task(model: str, approval: dict):
    """The human-in-the-loop step (Airflow 3 HITLOperator): Approve or Reject the challenger."""
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import Param

    approvers = [{"id": user, "name": user} for user in approval.get("approvers") or []]
    evaluated = "ti.xcom_pull(task_ids='evaluate')"
    return HITLOperator(
        task_id=APPROVE_TASK,
        subject=f"Promote {model} version {{{{ {evaluated}['challenger_version'] }}}} to champion?",
        body=(f"The challenger passed the automatic gate:\n\n```\n{{{{ {evaluated}['summary'] }}}}\n```\n\n"
              f"**{APPROVE}** moves alias `champion` of `{model}` to it; **{DECLINE}** keeps the "
              "champion. The version's tags (`glue.gate.*`) and model card are in the MLflow UI."),
        options=[APPROVE, DECLINE],
        defaults=[DECLINE],  # taken when nobody answers in time
        response_timeout=timedelta(hours=float(approval.get("timeout_hours", 72))),
        params={"comment": Param("", type="string", description="why (recorded with the answer)")},
        assigned_users=approvers or None,
    )


def training_dag(model: dict) -> None:
    """Declare the training DAG of one model."""
    name = model["name"]
    dag_id = training_dag_id(name)
    person = model["approval"].get("by") == "person"  # the model may need a person's approval

    @dag(
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),  # Mondays 03:00 UTC
            assets=retrain_request(name),
        ),
        **model_dag_args(dag_id, model, DOC.replace("{approval}", APPROVAL_DOC.format(
            hours=float(model["approval"].get("timeout_hours", 72))) if person else "")),
    )
    def glue_training():
        @task.branch
        def refresh_needed(dag_run=None) -> str:  # noqa: ANN001 - Airflow's context
            """`validate` (refresh the features first), or straight to `train` when they are fresh."""
            conf = dict(getattr(dag_run, "conf", None) or {})
            run_type = getattr(dag_run, "run_type", "")
            triggered = getattr(run_type, "value", run_type) == "asset_triggered"
            return "train" if triggered or conf.get("refresh") is False else "validate"

        @task(trigger_rule="none_failed_min_one_success")
        def train() -> str:
            """Fit, log to MLflow, register the new version as `challenger`."""
            from glue import training
            from glue.adapters.airflow import run_stage

            return run_stage(training.train, model=name)

        @task
        def evaluate() -> dict:
            """Challenger vs champion on the same window: the gate's verdict, kept for `promote`."""
            from glue import promotion
            from glue.adapters.airflow import run_stage

            return run_stage(promotion.evaluate, model=name, keep=("passed", "challenger_version"))

        @task(trigger_rule="none_failed_min_one_success")
        def promote(dag_run=None, ti=None) -> dict:  # noqa: ANN001 - Airflow's context
            """Move `champion` to the challenger if the verdict (and the person, where one was
            asked) says so; re-checked under a lock."""
            from glue import promotion
            from glue.adapters.airflow import approval_from_answer, run_stage

            answer = ti.xcom_pull(task_ids=APPROVE_TASK) if person else None
            approval = approval_from_answer(answer, f"Airflow {dag_id} run {dag_run.run_id}")
            return run_stage(lambda settings, spec: promotion.promote_evaluated(settings, spec, approval),
                             model=name, keep=("promoted", "challenger_version", "champion_after"))

        branch, fitted = refresh_needed(), train()
        # this refresh announces no glue://features: the monitoring DAGs it would start could
        # request another retrain of a model that is training right now
        branch >> validate() >> features.override(outlets=[])() >> fitted
        branch >> fitted
        evaluated, promoted = evaluate(), promote()
        fitted >> evaluated
        if not person:
            evaluated >> promoted
            return

        @task.branch
        def ask_approval(verdict: dict) -> str:
            """`approve` (ask a person) when the challenger passed and the active profile wants a
            person for this model (params.yaml approval.profiles); else straight to `promote`."""
            from glue.adapters.airflow import person_must_approve

            return APPROVE_TASK if person_must_approve(name, bool(verdict["passed"])) else "promote"

        asked = ask_approval(evaluated)
        asked >> approval_task(name, model["approval"]) >> promoted
        asked >> promoted

    glue_training()


_parsing = get_parsing_context().dag_id  # a task run parses the file for its own DAG only
for _model in models():
    if _parsing is None or _parsing == training_dag_id(_model["name"]):
        training_dag(_model)

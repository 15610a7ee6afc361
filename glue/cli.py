"""The `glue` command line: one subcommand per pipeline stage.

Each command is thin: it parses arguments, calls one library function and prints the small result
the function returns. Heavy tools (Feast, MLflow, GE, Evidently, Airflow) are imported inside the
library functions, never here, so `glue --help` starts in a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

from glue.errors import GlueError, service_outage

if TYPE_CHECKING:
    from glue.settings import ModelSpec, RayClusterSettings, Settings


class _State:
    debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profile",
    type=click.Choice(["local", "prod", "ray"]),
    default=None,
    help="Settings profile (default: $GLUE_PROFILE, else local).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="mlops-glue")
def cli(profile: str | None, debug: bool) -> None:
    """mlops-glue: DVC, Great Expectations, Feast, MLflow, Evidently and Airflow as one loop."""
    _State.debug = debug
    _quiet_tools(debug)
    if profile:
        os.environ["GLUE_PROFILE"] = profile


@cli.command("demo-data")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Raw data directory (default: the settings' raw_dir).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the demo: section (e.g. --set days=10 --set shift_day=5).")
def demo_data_cmd(out: Path | None, overrides: tuple[str, ...]) -> None:
    """Run the project's data generator (params.yaml data.generator) with its demo: section."""
    import yaml

    from glue import project_code
    from glue.errors import SettingsError
    from glue.settings import get_settings

    settings = get_settings()
    spec = settings.params.data.generator
    if not spec:
        raise SettingsError("params.yaml data.generator: the project has no data generator "
                            "(bring your batches to data/raw and `dvc add data/raw`)")
    demo = dict(settings.params.demo)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        demo[key] = yaml.safe_load(value)
    target = out or settings.raw_dir
    result = project_code.load_callable(spec, settings.project_dir, "data.generator")(demo, target)
    click.echo(result.summary() if hasattr(result, "summary") else f"wrote demo data to {target}")


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--feature-repo", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The existing Feast repo (copied into DIRECTORY/feature_repo unless it is that folder).")
@click.option("--name", "names", multiple=True, metavar="MODEL",
              help="Registered model name; repeat --name/--feature-service/--label/--task per model.")
@click.option("--feature-service", "services", multiple=True, metavar="NAME",
              help="The Feast feature service the model is trained and served on.")
@click.option("--label", "labels", multiple=True, metavar="VIEW:FIELD",
              help="The model's label: a field of one of the repo's label views.")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["binary_classification", "regression"]),
              help="Default: from the label's type (int/bool: binary_classification, float: regression).")
@click.option("--events", default="events", show_default=True,
              help="Folder of the raw event batches under data/raw/.")
@click.option("--git", is_flag=True,
              help="Also `git init` the project (else, outside a git work tree, `dvc init --no-scm`).")
def init_cmd(directory: Path, feature_repo: Path, names: tuple[str, ...], services: tuple[str, ...],
             labels: tuple[str, ...], tasks: tuple[str, ...], events: str, git: bool) -> None:
    """Make a new project in DIRECTORY around an existing Feast repo (params.yaml, dvc.yaml, dags/).

    Without --name/--feature-service/--label, params.yaml holds a commented model template to fill in.
    Refuses a directory that already holds params.yaml or dvc.yaml.
    """
    from glue import scaffold

    models = scaffold.model_requests(names, services, labels, tasks)
    click.echo(scaffold.init_project(directory, feature_repo, models, events=events, git=git).summary())


@cli.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
def validate_cmd(path: Path) -> None:
    """Check one batch file (parquet or CSV) against the raw schema; exit non-zero if it fails."""
    from glue import validation
    from glue.settings import get_settings

    result = validation.validate_file(path, get_settings().params.validation)
    click.echo(result.summary())
    if not result.success:
        sys.exit(3)


@cli.command("validate-batches")
def validate_batches_cmd() -> None:
    """The validation gate stage: accept or quarantine every raw batch (params.yaml data.events)."""
    from glue import validation
    from glue.settings import get_settings

    result = validation.validate_batches(get_settings())
    click.echo(result.summary())


@cli.command("features")
def features_cmd() -> None:
    """The feature stage: daily snapshot aggregates, `feast apply`, materialize to the online store."""
    from glue import features
    from glue.settings import get_settings

    result = features.build_features(get_settings())
    click.echo(result.summary())


_MODEL_OPTION = click.option(
    "--model", "model_name", default=None, metavar="NAME",
    help="One model of params.yaml `models:` (default: every model, in order).")


def _models(settings: Settings, name: str | None) -> list[ModelSpec]:
    return [settings.model(name)] if name else settings.models


@cli.command("train")
@_MODEL_OPTION
def train_cmd(model_name: str | None) -> None:
    """Train a model on its Feast training set, log it to MLflow, register it as `challenger`."""
    from glue import training
    from glue.settings import get_settings

    settings = get_settings()
    for model in _models(settings, model_name):
        click.echo(training.train(settings, model).summary())


@cli.command("evaluate")
@_MODEL_OPTION
def evaluate_cmd(model_name: str | None) -> None:
    """Score challenger and champion on the same fresh window and decide (metrics/<model>/evaluation.json)."""
    from glue import promotion
    from glue.settings import get_settings

    settings = get_settings()
    for model in _models(settings, model_name):
        click.echo(promotion.evaluate(settings, model).summary())


@cli.command("promote")
@_MODEL_OPTION
@click.option("--approved-by", "approved_by", default=None, metavar="NAME",
              help="A person approves the evaluated challenger (models whose params.yaml "
                   "approval.by is person); recorded as the approver on the version and its card.")
@click.option("--declined-by", "declined_by", default=None, metavar="NAME",
              help="A person declines it: the champion stays, the version is tagged declined.")
@click.option("--comment", default="", help="Why, recorded with the answer.")
def promote_cmd(model_name: str | None, approved_by: str | None, declined_by: str | None,
                comment: str) -> None:
    """Act on `glue evaluate`'s verdict: move alias `champion` to the challenger if it passed
    (and, where params.yaml asks for a person, if one approved)."""
    import datetime as dt
    import getpass

    from glue import promotion
    from glue.settings import get_settings

    if approved_by and declined_by:
        raise click.UsageError("give --approved-by or --declined-by, not both")
    person = approved_by or declined_by
    if person is not None and not person.strip():
        raise click.UsageError("--approved-by/--declined-by: the name of the person answering")
    if person and model_name is None:
        raise click.UsageError("a person's answer is about one model: add --model NAME")
    approval = None
    if person:
        approval = promotion.Approval(
            approved=bool(approved_by), by=person.strip(), comment=comment,
            at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            via=f"glue promote on {os.uname().nodename} as {getpass.getuser()}")
    settings = get_settings()
    for model in _models(settings, model_name):
        click.echo(promotion.promote_evaluated(settings, model, approval).summary())


@cli.command("run")
@click.option("--force", is_flag=True, help="Re-run every stage, even those DVC finds up to date.")
@click.option("--no-push", is_flag=True, help="Do not push the data to the DVC remote.")
def run_cmd(force: bool, no_push: bool) -> None:
    """Run the whole loop once (`dvc repro`), then push the versioned data to the DVC remote."""
    from glue import pipeline
    from glue.settings import get_settings

    result = pipeline.run_loop(get_settings(), force=force, push=not no_push)
    click.echo(result.summary())


@cli.command("lineage")
@click.argument("model_uri", required=False, metavar="MODEL_URI")
@click.option("--feature-view", "feature_view", default=None, metavar="NAME",
              help="Instead: which models and versions use this Feast feature view.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def lineage_cmd(model_uri: str | None, feature_view: str | None, as_json: bool) -> None:
    """The lineage record of a model version, e.g. `glue lineage models:/<name>@champion`.

    Data version and batches, validation result, feature service, views and refs, commit and
    dirty flag, training window, params, metrics, the gate's decision and approver, the drift
    reference and how much the version served (prediction-log lines per arm).
    """
    import json

    from glue import lineage_report
    from glue.settings import get_settings

    if (model_uri is None) == (feature_view is None):
        raise click.UsageError("give a MODEL_URI or --feature-view NAME (one of the two)")
    settings = get_settings()
    if feature_view:
        report = lineage_report.feature_view_usage(settings, feature_view)
        text = lineage_report.render_usage(report)
    else:
        report = lineage_report.model_lineage(settings, model_uri)
        text = lineage_report.render(report)
    click.echo(json.dumps(report, indent=2, sort_keys=False, default=str) if as_json else text)


@cli.command("reproduce")
@click.argument("model_uri", metavar="MODEL_URI")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Scratch folder for the worktree and its stores (default: a new temporary one).")
@click.option("--keep", is_flag=True, help="Keep the scratch workspace (the rebuilt stores) afterwards.")
@click.option("--remote", default=None, metavar="URL",
              help="Fetch the data version from this DVC remote instead of the recorded one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reproduce_cmd(model_uri: str, workdir: Path | None, keep: bool, remote: str | None,
                  as_json: bool) -> None:
    """Rebuild a registered version from its record and compare: `glue reproduce models:/<name>/<version>`.

    Checks out the recorded commit (a git worktree), fetches the recorded DVC data version from its
    remote, runs that commit's validate, features and train on the local profile in a scratch
    folder, then compares predictions on the registered run's held-out rows and the metrics.
    Exit 0 when identical or within tolerance, 1 when different or not reproducible.
    """
    import json

    from glue.reproduce import reproduce
    from glue.settings import get_settings

    result = reproduce(get_settings(), model_uri, workdir=workdir, keep=keep, remote=remote)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.summary())
    if not result.ok:
        sys.exit(1)


@cli.command("profile")
@click.option("--write", "path", type=click.Path(path_type=Path), default=None,
              help="Also write the record to this file (the `profile` stage of dvc.yaml).")
def profile_cmd(path: Path | None) -> None:
    """Show which stores the active profile writes to (MLflow registry, Feast registry and stores)."""
    import json

    from glue import pipeline
    from glue.settings import get_settings

    settings = get_settings()
    if path is not None:
        pipeline.write_profile_record(settings, path)
        click.echo(f"profile {settings.profile}: its stores recorded in {path}")
        return
    click.echo(json.dumps(pipeline.profile_record(settings), indent=2, sort_keys=True))


@cli.command("monitor")
@click.option("--model", "model", default=None, metavar="NAME",
              help="The model to check (default: every model in params.yaml).")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="The day to check (default: the last day with validated events).")
def monitor_cmd(model: str | None, day: str | None) -> None:
    """Drift and delayed-label quality of each champion on one day; decide whether to retrain.

    Writes Evidently reports, decision.json and metrics.prom under reports/monitoring/<model>/<day>/
    and logs them to the model's MLflow monitoring experiment. Exits 0 whatever the decision.
    """
    from glue import monitor
    from glue.settings import get_settings

    for result in monitor.check_all(get_settings(), _parse_day(day) if day else None, model):
        click.echo(result.summary())


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None


@cli.group("airflow")
def airflow_group() -> None:
    """The loop in Airflow: glue_features, and per model glue_training__<model>, glue_monitoring__<model>."""


@airflow_group.command("init")
def airflow_init_cmd() -> None:
    """Create or upgrade the Airflow metadata DB of this profile and register every DAG in it."""
    from glue.adapters import airflow
    from glue.settings import get_settings

    settings = get_settings()
    home = airflow.init_airflow(settings)
    dags = airflow.serialize_dags(settings)
    click.echo(f"Airflow ready in {home}; DAGs {', '.join(dags)}")


@airflow_group.command("test")
@click.argument("dag_id")
@click.option("--date", "logical_date", default=None,
              help="Logical date of the run, YYYY-MM-DD (default: now).")
def airflow_test_cmd(dag_id: str, logical_date: str | None) -> None:
    """Run one DAG run in-process (`airflow dags test`), with this project's Airflow settings."""
    from glue.adapters import airflow
    from glue.settings import get_settings

    result = airflow.test_dag(get_settings(), dag_id, logical_date)
    click.echo(result.summary())


@airflow_group.command("ui")
def airflow_ui_cmd() -> None:
    """Start `airflow standalone` (UI, scheduler, DAG processor, triggerer) until Ctrl-C."""
    import signal

    from glue.adapters import airflow
    from glue.settings import get_settings

    settings = get_settings()
    proc = airflow.standalone(settings)
    passwords = airflow.password_file(settings)
    click.echo("Airflow UI: http://localhost:8080 (user admin; password "
               + (f"in {passwords} once started)" if passwords else "GLUE_AIRFLOW_ADMIN_PASSWORD)"), err=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sys.exit(proc.wait())
    except KeyboardInterrupt:
        sys.exit(airflow.stop_standalone(proc))


@cli.group("services")
def services_group() -> None:
    """The prod profile's service set as local processes: MLflow server, Airflow with Celery.

    PostgreSQL and Redis must be running (GLUE_POSTGRES_HOST/PORT/USER/PASSWORD, GLUE_REDIS_HOST/PORT;
    default 127.0.0.1). Ports: GLUE_MLFLOW_PORT (5000), GLUE_AIRFLOW_PORT (8080).
    """


@services_group.command("start")
def services_start_cmd() -> None:
    """Create the databases (if absent) and start every service not yet running."""
    from glue import services
    from glue.settings import find_project_dir

    services.start(find_project_dir(), echo=click.echo)


@services_group.command("stop")
def services_stop_cmd() -> None:
    """Stop the service set (SIGTERM, then SIGKILL after 20 s)."""
    from glue import services
    from glue.settings import find_project_dir

    services.stop(find_project_dir(), echo=click.echo)


@services_group.command("status")
def services_status_cmd() -> None:
    """Each service: running (pid) or stopped, and its address."""
    from glue import services
    from glue.settings import find_project_dir

    rows = services.status(find_project_dir())
    for name, pid, address in rows:
        state = f"running (pid {pid})" if pid else "stopped"
        click.echo(f"{name:<18} {state:<22} {address}")
    if not all(pid for _, pid, _ in rows):
        sys.exit(3)


@services_group.command("env")
def services_env_cmd() -> None:
    """The exports that point this shell at the set: eval "$(glue services env)"."""
    import shlex

    from glue import services
    from glue.settings import find_project_dir

    for key, value in services.shell_env(find_project_dir()).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@cli.group("ray")
def ray_group() -> None:
    """The ray profile's cluster as local processes: a head and worker nodes on loopback.

    Small by default: GLUE_RAY_WORKERS (1) worker nodes beside the head, GLUE_RAY_CPUS (1) CPU and
    GLUE_RAY_OBJECT_STORE_MB (256) per node, at GLUE_RAY_HOST:GLUE_RAY_PORT (127.0.0.2:6390).
    """


@ray_group.command("start")
def ray_start_cmd() -> None:
    """Start the head and the worker nodes; wait until every node has joined."""
    from glue.adapters import ray

    click.echo(ray.start_cluster(*_ray_cluster()).summary())


@ray_group.command("stop")
def ray_stop_cmd() -> None:
    """Stop exactly the Ray processes `glue ray start` started (SIGTERM, SIGKILL after 15 s)."""
    from glue.adapters import ray

    lines = ray.stop_cluster(_ray_cluster()[1])
    click.echo("\n".join(lines) if lines else "ray: no cluster started by glue is running")


@ray_group.command("status")
def ray_status_cmd() -> None:
    """Running or stopped; the nodes, CPUs and object store the cluster reports."""
    from glue.adapters import ray

    status = ray.cluster_status(*_ray_cluster())
    click.echo(status.summary())
    if not status.running:
        sys.exit(3)


@ray_group.command("env")
def ray_env_cmd() -> None:
    """Print the shell exports Ray's and Feast's own CLIs need for glue's cluster.

    `eval "$(glue ray env)"`, then e.g. `ray status` or `feast -f ray/feature_store.yaml
    materialize ...`: RAY_ADDRESS, FEAST_RAY_ADDRESS and the cluster's token authentication
    (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH).
    """
    import shlex

    cluster, _ = _ray_cluster()
    env = {"RAY_ADDRESS": cluster.address, "FEAST_RAY_ADDRESS": cluster.address, **cluster.auth_env()}
    for key, value in env.items():
        click.echo(f"export {key}={shlex.quote(value)}")


def _ray_cluster() -> tuple[RayClusterSettings, Path]:
    from glue.settings import ray_cluster

    return ray_cluster()


@cli.command("simulate")
@click.option("--days", type=int, required=True, help="How many days to run the loop for.")
@click.option("--model", "model", default=None, metavar="NAME",
              help="Simulate one model (default: every model in params.yaml).")
@click.option("--start-day", type=int, default=None,
              help="First simulated day (0-based); earlier days are the history the first champions "
                   "train on (default: the first day with mature reference windows).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the demo: section for the generator (e.g. --set shift_day=63).")
@click.option("--warmup-days", type=int, default=30, show_default=True,
              help="Days the rolling features take to fill up (for the default --start-day).")
def simulate_cmd(days: int, model: str | None, start_day: int | None, overrides: tuple[str, ...],
                 warmup_days: int) -> None:
    """Drive the loop day by day through the real DAGs: monitor, and retrain when it says so.

    The project's data generator (params.yaml data.generator) writes the days; each simulated day
    delivers what had arrived by its end, runs glue_features, each model's monitoring DAG, and its
    training DAG when the check asks for a retrain.
    """
    from glue import simulation
    from glue.settings import get_settings

    result = simulation.simulate(get_settings(), days=days, start_day=start_day, model=model,
                                 overrides=_key_values(overrides), warmup_days=warmup_days)
    click.echo(result.summary())


def _key_values(items: tuple[str, ...]) -> dict[str, object]:
    """--set KEY=VALUE options as a dict, each value parsed as YAML (10 -> int, null -> None)."""
    import yaml

    values: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        values[key] = yaml.safe_load(value)
    return values


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="uvicorn worker processes (each loads the model and opens the Feast store).")
def serve_cmd(host: str, port: int, workers: int) -> None:
    """Online scoring of every model: POST /models/<name>/predict; /health, /ready, /metrics.

    One hop: the Feast store is read in-process, no feature server in between. Each model's request
    schema comes from its feature service; its champion is re-checked every serving.poll_seconds
    (GLUE_SERVE_POLL_SECONDS) and swapped without downtime.
    """
    from glue import serving
    from glue.settings import get_settings

    routes = ", ".join(f"POST {r}" for r in serving.routes_of(get_settings()))
    click.echo(f"glue serve: http://{host}:{port} ({routes}; GET /ready, /metrics); Ctrl-C stops", err=True)
    serving.serve(host=host, port=port, workers=workers)


@cli.command("score-batch")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="The day to score (default: every validated day).")
@_MODEL_OPTION
def score_batch_cmd(day: str | None, model_name: str | None) -> None:
    """Score validated events with a model's champion on Feast's offline (point-in-time) features.

    Writes data/scores/<model>/<day or all>.parquet.
    """
    from glue import batch_scoring
    from glue.settings import get_settings

    settings = get_settings()
    for model in _models(settings, model_name):
        click.echo(batch_scoring.score_batch(settings, model, _parse_day(day) if day else None).summary())


def _quiet_tools(debug: bool) -> None:
    """Keep the tools' deprecation chatter and INFO logs off the terminal unless --debug.

    The stage summaries are what a user reads; MLflow, Feast and SQLAlchemy log at INFO and warn
    about their own internals on every run.
    """
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("mlflow", "feast", "great_expectations", "evidently", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `glue` console script: user errors without tracebacks."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except GlueError as exc:
        if _State.debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # a service that is down is the user's to bring back, not a bug
        outage = service_outage(exc)
        if outage is None:
            raise
        if _State.debug:
            traceback.print_exc()
        click.echo(f"error: {outage}", err=True)
        sys.exit(outage.exit_code)


if __name__ == "__main__":
    main()

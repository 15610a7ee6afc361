"""The Airflow adapter: the one glue module that configures and runs Airflow.

Why a module of its own: Airflow is configured entirely through ``AIRFLOW__*`` environment
variables, and the same DAGs must run on the embedded ``local`` profile (SQLite metadata DB,
LocalExecutor, state under ``.glue/airflow``) and on ``prod`` (PostgreSQL, CeleryExecutor with a
Redis broker). :func:`airflow_env` decides that once; every Airflow process glue starts (``airflow db
migrate``, ``airflow dags test``, ``airflow standalone``) gets that environment, so a user who runs
the ``airflow`` CLI themselves with ``glue airflow env`` sees exactly what glue sees.

The DAGs (dags/) are built from the project's model specs: one ``glue_features`` DAG for the
project, and per model ``glue_training__<model>`` and ``glue_monitoring__<model>``
(:func:`dag_ids`). Their tasks call :func:`run_stage` / :func:`run_check`, which turn a user
mistake (:class:`GlueError`) into a task failure that Airflow does not retry: bad data will still
be bad in five minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue.errors import GlueError

if TYPE_CHECKING:
    from glue.settings import Settings

# DAG ids, as dags/project.py builds them from params.yaml (the DAG files may not import glue)
FEATURES_DAG = "glue_features"
TRAINING_DAG_PREFIX = "glue_training__"
MONITORING_DAG_PREFIX = "glue_monitoring__"
# conf of a training run whose features are already fresh (glue_features ran just before)
REFRESH_CONF = "refresh"

# prod defaults name the development services (README: Profiles); override through the environment.
PROD_DB_ENV = "GLUE_AIRFLOW_DB_URI"
PROD_BROKER_ENV = "GLUE_AIRFLOW_BROKER_URL"
PROD_RESULT_BACKEND_ENV = "GLUE_AIRFLOW_RESULT_BACKEND"
PROD_DB_DEFAULT = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
PROD_BROKER_DEFAULT = "redis://127.0.0.1:6379/1"

ENV_PREFIX = "GLUE_"
_SETTINGS_PASSED_ON = (
    "data_dir", "raw_dir", "validated_dir", "quarantine_dir", "state_dir", "features_dir",
    "mlflow_tracking_uri", "mlflow_registry_uri", "mlflow_artifacts_dir", "feast_repo", "feast_yaml",
    "airflow_home", "dvc_remote", "monitoring_dir", "outputs_dir",
)

# Written after a successful `airflow db migrate`; holds what it was migrated for.
_MIGRATED_STAMP = "glue-db-migrated.json"
_PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # pragma: allowlist secret
# Written once the prod admin user has its password (ensure_admin_user).
_ADMIN_STAMP = "glue-admin-user.json"
# The prod profile's auth manager: FAB's, approvers by user name (see GlueFabAuthManager below)
FAB_AUTH_MANAGER = "glue.adapters.airflow.GlueFabAuthManager"


@dataclass(frozen=True)
class DagTestResult:
    """One `airflow dags test` run: its id, each task's final state, what each task returned (its
    `return_value` XCom, read with the states: one Airflow start less per run) and the captured log."""

    dag_id: str
    logical_date: str
    run_id: str
    task_states: dict[str, str]
    seconds: float
    log: str
    returns: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        states = ", ".join(f"{task} {state}" for task, state in self.task_states.items())
        return f"{self.dag_id} {self.logical_date}: ok in {self.seconds:.1f} s ({states})"


def training_dag_id(model: str) -> str:
    """The DAG that trains, gates and promotes one model."""
    return TRAINING_DAG_PREFIX + model


def monitoring_dag_id(model: str) -> str:
    """The DAG that checks one model's champion every day and may request its retraining."""
    return MONITORING_DAG_PREFIX + model


def dag_ids(settings: Settings) -> list[str]:
    """Every DAG of the project: glue_features, then each model's training and monitoring DAG."""
    return [FEATURES_DAG, *(dag for m in settings.models
                            for dag in (training_dag_id(m.name), monitoring_dag_id(m.name)))]


def airflow_env(settings: Settings) -> dict[str, str]:
    """The ``AIRFLOW__*`` (and ``GLUE_*``) variables every Airflow process of this project gets."""
    home = Path(settings.airflow_home)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_dir / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        # Our DAGs are code, not configuration: no need to hide them from the UI until unpaused.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "GLUE_PROJECT_DIR": str(settings.project_dir),
        "GLUE_PROFILE": settings.profile,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "GX_ANALYTICS_ENABLED": "false",
        "TQDM_DISABLE": "1",  # task logs are files; progress bars only clutter them
    }
    if settings.profile == "local":
        # Airflow 3 runs LocalExecutor on SQLite (SequentialExecutor is gone); two cores, so
        # keep parallelism low and let SQLite serialise the writes.
        env |= {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",  # a laptop UI, not a service
            # Airflow's SimpleAuthManager, one generated admin password: a laptop's UI
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / _PASSWORDS_FILE),
        }
    else:
        db = os.environ.get(PROD_DB_ENV, PROD_DB_DEFAULT)
        env |= airflow_prod_env(settings.project_dir)
        env |= {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": os.environ.get(PROD_BROKER_ENV, PROD_BROKER_DEFAULT),
            "AIRFLOW__CELERY__RESULT_BACKEND": os.environ.get(
                PROD_RESULT_BACKEND_ENV, "db+" + db.replace("+psycopg2", "")
            ),
        }
    # Tasks rebuild their settings from the environment: hand them the caller's paths and URIs
    # (including overrides made in code, e.g. by glue/simulation.py), then any other GLUE_* knob.
    for name in _SETTINGS_PASSED_ON:
        env[ENV_PREFIX + name.upper()] = str(getattr(settings, name))
    for name, value in os.environ.items():
        if name.startswith(ENV_PREFIX) and name not in env:
            env[name] = value
    return env


def airflow_prod_env(project_dir: Path) -> dict[str, str]:
    """Airflow settings every prod Airflow process shares: auth manager, API address, secrets.

    Part of the prod profile's :func:`airflow_env`, so `glue airflow` commands, the processes of
    `glue services` and a user's `airflow` CLI agree on who may do what. The auth manager is the
    FAB provider's: users and roles (Admin, Op, User, Viewer, and a team's own) in the metadata DB,
    managed with `airflow users|roles ...`, the UI's Security menu or its REST API
    (/auth/fab/v1/users); SimpleAuthManager keeps users in a config string and is meant for
    development. The JWT secret signs API tokens, the secret key Flask's sessions: every API
    server process must share both.
    """
    from glue import service_state

    creds = service_state.credentials(service_state.state_dir(project_dir))
    url = service_state.airflow_url()
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__API_AUTH__JWT_SECRET": creds["GLUE_AIRFLOW_JWT_SECRET"],
        "AIRFLOW__API__SECRET_KEY": creds["GLUE_AIRFLOW_SECRET_KEY"],
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": url.rsplit(":", 1)[1],
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    }


def ensure_admin_user(settings: Settings, username: str, password: str) -> bool:
    """Make `username` an Admin of the prod auth manager (FAB) signing in with `password`.

    `airflow users create` on the first start (after `airflow db migrate` made FAB's tables);
    `airflow users reset-password` when the password changed since (a stamp keeps its hash, so an
    unchanged start costs no Airflow CLI call). Returns whether anything was done.
    """
    import hashlib

    env = airflow_env(settings)
    stamp = Path(env["AIRFLOW_HOME"]) / _ADMIN_STAMP
    wanted = {"user": username, "db": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
              "password_sha256": hashlib.sha256(password.encode()).hexdigest()}
    try:
        if json.loads(stamp.read_text()) == wanted:
            return False
    except (OSError, ValueError):
        pass
    proc = _airflow(["users", "create", "--username", username, "--password", password, "--role", "Admin",
                     "--firstname", username, "--lastname", "glue", "--email", f"{username}@localhost"], env)
    if proc.returncode == 0 and "already exist" in proc.stdout + proc.stderr:
        proc = _airflow(["users", "reset-password", "--username", username, "--password", password], env)
    if proc.returncode != 0:
        raise GlueError(f"could not make '{username}' an Airflow admin (exit {proc.returncode}):\n"
                        f"{_tail(proc.stdout + proc.stderr)}")
    # the stamp holds a hash of the password: private to its owner, as credentials.env is
    fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(wanted))
    return True


def init_airflow(settings: Settings, *, force: bool = False) -> Path:
    """Create or upgrade the Airflow metadata DB (`airflow db migrate`); a no-op when up to date.

    The stamp file records the Airflow version and DB URI it was migrated for, so a second call
    costs no Airflow import; a new Airflow version or another DB migrates again.
    """
    env = airflow_env(settings)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / _MIGRATED_STAMP
    wanted = {"airflow": _airflow_version(), "db": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]}
    if not force and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return home
        except ValueError:
            pass
    proc = _airflow(["db", "migrate"], env)
    if proc.returncode != 0:
        raise GlueError(
            f"`airflow db migrate` failed for {env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']} "
            f"(AIRFLOW_HOME={home}):\n{_tail(proc.stdout + proc.stderr)}"
        )
    stamp.write_text(json.dumps(wanted))
    return home


def serialize_dags(settings: Settings) -> list[str]:
    """Parse the project's DAG files into the metadata DB (`airflow dags reserialize`): the UI lists
    every DAG of every model without waiting for a DAG processor. Returns the DAG ids expected."""
    init_airflow(settings)
    proc = _airflow(["dags", "reserialize"], airflow_env(settings))
    if proc.returncode != 0:
        raise GlueError(f"`airflow dags reserialize` failed (exit {proc.returncode}):\n"
                        f"{_tail(proc.stdout + proc.stderr)}")
    return dag_ids(settings)


def test_dag(
    settings: Settings,
    dag_id: str,
    logical_date: date | datetime | str | None = None,
    conf: dict[str, Any] | None = None,
) -> DagTestResult:
    """Run one DAG run in-process with `airflow dags test`; raise GlueError naming the failed task.

    `dags test` runs the tasks without a scheduler, so an asset event a task emits is recorded
    but triggers no DAG run: the caller starts the consumer itself (see glue/simulation.py).
    """
    import time

    init_airflow(settings)
    env = airflow_env(settings)
    stamp = _iso(logical_date) if logical_date is not None else None
    args = ["dags", "test", dag_id]
    if stamp:
        args.append(stamp)
    if conf:
        args += ["--conf", json.dumps(conf)]
    t0 = time.perf_counter()
    proc = _airflow(args, env)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    run = _last_run(env, dag_id)
    if run and stamp and not run["logical_date"].startswith(stamp[:10]):
        run = None  # an older run: this one never started
    states = run["states"] if run else {}
    if proc.returncode != 0 or not run or run["state"] != "success":
        failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
        first = [t for t, s in states.items() if s == "failed"]
        where = f"task {first[0]!r} failed" if first else "the run failed"
        detail = f" (states: {', '.join(f'{t}={s}' for t, s in states.items())})" if failed else ""
        raise GlueError(
            f"DAG {dag_id!r} run {stamp or 'now'}: {where}{detail}; logs under "
            f"{env['AIRFLOW__LOGGING__BASE_LOG_FOLDER']}\n{_tail(_errors(log) or log)}"
        )
    return DagTestResult(dag_id=dag_id, logical_date=run["logical_date"], run_id=run["run_id"],
                         task_states=states, seconds=seconds, log=log, returns=run["returns"])


def standalone(settings: Settings) -> subprocess.Popen:
    """Start `airflow standalone` (API server + UI, scheduler, DAG processor, triggerer).

    In a session of its own, so :func:`stop_standalone` can stop every process it forked.
    """
    init_airflow(settings)
    env = airflow_env(settings)
    return subprocess.Popen([_airflow_bin(), "standalone"], env={**os.environ, **env},
                            start_new_session=True)


def stop_standalone(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """Stop `airflow standalone` and its children: Ctrl-C first (its clean shutdown), then kill."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            # standalone has exited; its children may linger a moment: finish the group off.
            os.killpg(proc.pid, signal.SIGTERM)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        break
    return proc.wait()


def password_file(settings: Settings) -> Path | None:
    """Where the local profile's simple auth manager writes the generated ``admin`` password
    (None on prod, whose admin signs in with GLUE_AIRFLOW_ADMIN_PASSWORD)."""
    found = airflow_env(settings).get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return Path(found) if found else None


def run_stage(stage: Callable[..., Any], keep: tuple[str, ...] = (), model: str | None = None) -> Any:
    """Run one glue stage inside an Airflow task; return its summary (small, for XCom).

    A project stage is called as ``stage(settings)``; with `model` (a model's name), as
    ``stage(settings, spec)`` with that model's spec. With ``keep``, return a dict of the summary
    and those fields of the result instead. A GlueError (bad data, bad settings) fails the task
    without retries: retrying cannot fix it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from glue.settings import get_settings

    try:
        settings = get_settings()
        result = stage(settings) if model is None else stage(settings, settings.model(model))
    except GlueError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    if keep:
        return {"summary": result.summary(), **{name: getattr(result, name) for name in keep}}
    return result.summary()


def run_check(model: str, ds: str | None) -> dict[str, Any]:
    """One model's monitoring check for the run's day as a small dict for XCom.

    The day is the run's (``ds``, YYYY-MM-DD); a run without one (started by an asset event)
    checks the newest day with a validated batch.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from glue import monitor
    from glue.settings import get_settings

    try:
        settings = get_settings()
        day = date.fromisoformat(ds) if ds else monitor.last_data_day(settings)
        result = monitor.check(settings, settings.model(model), day)
    except GlueError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    decision = result.decision
    return {"model": model, "day": day.isoformat(), "drift": bool(decision.drift),
            "decay": bool(decision.decay), "retrain": bool(decision.retrain),
            "summary": result.summary()}


# the human-in-the-loop task of a training DAG whose model wants a person's approval
APPROVE_TASK = "approve"
APPROVE, DECLINE = "Approve", "Reject"


def person_must_approve(model: str, passed: bool) -> bool:
    """True when the challenger passed the gate and the model's ``approval`` wants a person on the
    active profile: the training DAG then asks in its `approve` task before `promote`."""
    from glue.settings import get_settings

    settings = get_settings()
    return passed and settings.model(model).approval.person_required(settings.profile)


def approval_from_answer(answer: dict[str, Any] | None, where: str) -> Any:
    """The gate's :class:`glue.promotion.Approval` from the `approve` task's result (its XCom: the
    chosen option, who answered and when, the form's comment); None when nobody was asked. An
    unanswered request that timed out took the default option (Reject) and names nobody."""
    from glue.promotion import Approval

    if not answer:
        return None
    chosen = list(answer.get("chosen_options") or [])
    user = answer.get("responded_by_user") or {}
    at = answer.get("responded_at")
    at_text = at.isoformat(timespec="seconds") if isinstance(at, datetime) else str(at or "")
    comment = str((answer.get("params_input") or {}).get("comment") or "")
    by = str(user.get("name") or user.get("id") or "") or "nobody (no answer in time: the default, Reject)"
    return Approval(approved=chosen == [APPROVE], by=by, at=at_text, via=where, comment=comment)


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([_airflow_bin(), *args], env={**os.environ, **env},
                          capture_output=True, text=True)


def _airflow_bin() -> str:
    """The `airflow` script of this interpreter's environment (not whatever is on PATH)."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def _last_run(env: dict[str, str], dag_id: str) -> dict[str, Any] | None:
    """The most recent run of a DAG with each task's state and return value, read from the metadata DB."""
    script = (
        "import json, sys\n"
        "from airflow.models import DagRun, TaskInstance\n"
        "from airflow.models.xcom import XComModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    dr = s.query(DagRun).filter_by(dag_id=sys.argv[1]).order_by(DagRun.id.desc()).first()\n"
        "    if dr is None:\n"
        "        print('null'); sys.exit(0)\n"
        "    tis = s.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).all()\n"
        "    tis.sort(key=lambda t: (t.start_date is None, str(t.start_date), t.task_id))\n"
        "    xcoms = s.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, map_index=-1,\n"
        "                                         key='return_value')\n"
        "    print(json.dumps({'run_id': dr.run_id, 'state': str(dr.state),\n"
        "        'logical_date': dr.logical_date.isoformat() if dr.logical_date else '',\n"
        "        'states': {t.task_id: str(t.state) for t in tis},\n"
        "        'returns': {x.task_id: XComModel.deserialize_value(x) for x in xcoms}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, dag_id], env={**os.environ, **env},
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _iso(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _errors(log: str) -> str:
    """The lines of a task log that say what went wrong."""
    keep = [line for line in log.splitlines()
            if any(word in line for word in ("Error", "error", "Exception", "FAILED", "failed"))]
    return "\n".join(keep[-25:])


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def __getattr__(name: str) -> Any:
    """``GlueFabAuthManager``, built on first use: Airflow's processes import it by name
    (``AIRFLOW__CORE__AUTH_MANAGER``), and building it loads FAB, which nothing else here needs."""
    if name == "GlueFabAuthManager":
        cls = globals()[name] = _fab_auth_manager_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fab_auth_manager_class() -> type:
    """The prod profile's Airflow auth manager: the FAB provider's, with approvers named by user name.

    Why a subclass: Airflow's human-in-the-loop check (the ``approve`` step of a training DAG)
    lets a user answer when the user's *id* is among the task's assigned users. SimpleAuthManager's
    ids are user names; FAB's are the row numbers of its user table ("1", "2"...), which a DAG
    cannot know when it is parsed, while params.yaml ``approval.approvers`` lists user names, as a
    team writes them. This manager also accepts a respondent whose user name is assigned;
    everything else (users, roles, permissions, the login page, the token API) is FAB's own.
    """
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    class GlueFabAuthManager(FabAuthManager):
        __doc__ = _fab_auth_manager_class.__doc__

        def is_authorized_hitl_task(self, *, assigned_users: set[str], user: Any) -> bool:
            return (super().is_authorized_hitl_task(assigned_users=assigned_users, user=user)
                    or user.get_name() in assigned_users)

    GlueFabAuthManager.__module__, GlueFabAuthManager.__qualname__ = __name__, "GlueFabAuthManager"
    return GlueFabAuthManager

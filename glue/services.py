"""`glue services`: the prod profile's service set as local processes, for machines without Docker.

Why: the `prod` profile runs against services (README: Profiles): an MLflow tracking server on
PostgreSQL with proxied artifacts and basic auth, Feast's SQL registry and PostgreSQL offline store
with a Redis online store, Airflow on PostgreSQL with the CeleryExecutor. PostgreSQL and Redis are
expected to run already (a system service, or the containers of infra/docker-compose.yml); this
module creates the databases they need (idempotently) and starts, watches and stops the rest as
plain processes:

    mlflow            mlflow server --app-name basic-auth, PostgreSQL backend, artifacts proxied
    airflow-api       airflow api-server (UI and REST API; FAB auth manager: users and roles)
    airflow-scheduler airflow scheduler (queues task instances to Celery)
    airflow-dags      airflow dag-processor
    airflow-triggerer airflow triggerer
    airflow-worker    airflow celery worker (Redis broker, PostgreSQL result backend)

Credentials are never in the code or the repo: MLflow's admin password, its Flask secret, Airflow's
admin password and JWT secret come from the environment when set, else are generated once and
kept in ``<state_dir>/prod/credentials.env`` (mode 0600). `glue services env` prints the exports a
shell needs to use the set (glue, mlflow, feast and airflow CLIs).

Everything the set writes lives under ``<state_dir>/prod/``: pids/, logs/, the MLflow auth config
and artifact store, AIRFLOW_HOME.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from glue.errors import GlueError
from glue.service_state import ADMIN, airflow_url, credentials, mlflow_url, state_dir
from glue.settings import feast_prod_env, service_database

# env var -> default; the databases of the set get GLUE_SERVICES_DB_PREFIX in front of their names
POSTGRES_ENV = {"GLUE_POSTGRES_HOST": "127.0.0.1", "GLUE_POSTGRES_PORT": "5432",
                "GLUE_POSTGRES_USER": "postgres"}
DATABASES = ("mlflow", "mlflow_auth", "feast", "airflow")
# What a signed-in MLflow user who was granted nothing may do: nothing. Experiments and models are
# shared by granting (MLflow's permissions API or UI), never by default; glue itself signs in as the
# admin. infra/docker-compose.yml sets the same (tests/unit/test_infra.py holds the two together).
MLFLOW_DEFAULT_PERMISSION = "NO_PERMISSIONS"
# the processes of the set, in start order (see services())
SERVICE_NAMES = ("mlflow", "airflow-api", "airflow-scheduler", "airflow-dags", "airflow-triggerer",
                 "airflow-worker")
_START_TIMEOUT = 180.0


@dataclass(frozen=True)
class Service:
    """One process of the set: how to start it and how to tell it is up."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    address: str


def postgres(name: str = "") -> dict[str, str]:
    """Connection values of the PostgreSQL service (environment, else the local service)."""
    values = {k: os.environ.get(k, v) for k, v in POSTGRES_ENV.items()}
    values["GLUE_POSTGRES_PASSWORD"] = os.environ.get("GLUE_POSTGRES_PASSWORD", "")
    values["database"] = service_database(name) if name else ""
    return values


def database_uri(name: str, driver: str = "postgresql") -> str:
    """A SQLAlchemy URL of one of the set's databases (GLUE_SERVICES_DB_PREFIX applied)."""
    from glue.settings import postgres_uri

    return postgres_uri(postgres(name)["database"], driver)


def ensure_databases(names: tuple[str, ...] = DATABASES) -> list[str]:
    """Create the databases that do not exist yet; returns the ones created."""
    import psycopg

    pg = postgres()
    try:
        conn = psycopg.connect(host=pg["GLUE_POSTGRES_HOST"], port=int(pg["GLUE_POSTGRES_PORT"]),
                               user=pg["GLUE_POSTGRES_USER"], password=pg["GLUE_POSTGRES_PASSWORD"] or None,
                               dbname="postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise GlueError(f"PostgreSQL at {pg['GLUE_POSTGRES_HOST']}:{pg['GLUE_POSTGRES_PORT']} "
                        f"(GLUE_POSTGRES_HOST/PORT/USER/PASSWORD) is not reachable: {exc}") from None
    created = []
    with conn:
        for name in names:
            db = postgres(name)["database"]
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                conn.execute(f'CREATE DATABASE "{db}"')  # names are ours, not user input
                created.append(db)
    return created


def redis() -> tuple[str, int]:
    """Host and port of the Redis service (GLUE_REDIS_HOST/PORT, else the local service)."""
    return os.environ.get("GLUE_REDIS_HOST", "127.0.0.1"), int(os.environ.get("GLUE_REDIS_PORT", "6379"))


def redis_dbs() -> dict[str, int]:
    """The Redis databases the set uses: Feast's online store (GLUE_REDIS_DB, default 0) and
    Airflow's Celery broker (GLUE_REDIS_BROKER_DB, default 1)."""
    return {"feast": int(os.environ.get("GLUE_REDIS_DB", "0")),
            "broker": int(os.environ.get("GLUE_REDIS_BROKER_DB", "1"))}


def check_redis() -> str:
    """The Redis address, after a PING answered PONG."""
    host, port = redis()
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        raise GlueError(f"Redis at {host}:{port} (GLUE_REDIS_HOST/PORT) is not reachable: {exc}") from None
    if not answer.startswith(b"+PONG"):
        raise GlueError(f"Redis at {host}:{port} answered {answer!r} to PING (a password set?)")
    return f"{host}:{port}"


def glue_env(state: Path, creds: dict[str, str]) -> dict[str, str]:
    """What a shell (and every process of the set) needs to use the set with glue and the tool CLIs."""
    return {
        "GLUE_PROFILE": "prod",
        "GLUE_MLFLOW_TRACKING_URI": mlflow_url(),
        "MLFLOW_TRACKING_URI": mlflow_url(),
        "MLFLOW_TRACKING_USERNAME": creds["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD": creds["MLFLOW_TRACKING_PASSWORD"],
        **feast_prod_env(),
        "GLUE_AIRFLOW_DB_URI": database_uri("airflow", "postgresql+psycopg2"),
        "GLUE_AIRFLOW_BROKER_URL": "redis://{}:{}/{}".format(*redis(), redis_dbs()["broker"]),
    }


def services(project_dir: Path) -> list[Service]:
    """The processes of the set, in start order."""
    from glue.adapters import airflow
    from glue.settings import load_settings

    state = state_dir(project_dir)
    creds = credentials(state)
    env = glue_env(state, creds)
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    settings = load_settings("prod", project_dir)

    auth_ini = state / "mlflow-auth.ini"
    auth_ini.write_text(
        "[mlflow]\n"
        f"default_permission = {MLFLOW_DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri('mlflow_auth')}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {creds['MLFLOW_TRACKING_PASSWORD']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    os.chmod(auth_ini, 0o600)
    mlflow_port = mlflow_url().rsplit(":", 1)[1]
    mlflow = Service(
        name="mlflow",
        command=[_bin("mlflow"), "server", "--app-name", "basic-auth",
                 "--backend-store-uri", database_uri("mlflow"),
                 "--artifacts-destination", str(state / "mlartifacts"),
                 "--host", "127.0.0.1", "--port", mlflow_port, "--workers", "1"],
        env={"MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
             "MLFLOW_FLASK_SERVER_SECRET_KEY": creds["MLFLOW_FLASK_SERVER_SECRET_KEY"]},
        ready=lambda: _http_ok(f"{mlflow_url()}/health"),
        address=mlflow_url(),
    )
    airflow = {**airflow.airflow_env(settings), **env}
    home = Path(airflow["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)

    def airflow_service(name: str, args: list[str], ready: Callable[[], bool], address: str = "") -> Service:
        return Service(name=name, command=[_bin("airflow"), *args], env=airflow, ready=ready, address=address)

    procs = [
        mlflow,
        airflow_service("airflow-api", ["api-server"],
                        lambda: _http_ok(f"{airflow_url()}/api/v2/monitor/health"), airflow_url()),
        airflow_service("airflow-scheduler", ["scheduler"], lambda: True),
        airflow_service("airflow-dags", ["dag-processor"], lambda: True),
        airflow_service("airflow-triggerer", ["triggerer"], lambda: True),
        airflow_service("airflow-worker", ["celery", "worker", "--concurrency", "2"],
                        lambda: _celery_up(airflow), f"redis broker db {redis_dbs()['broker']}"),
    ]
    assert tuple(p.name for p in procs) == SERVICE_NAMES
    return procs


def start(project_dir: Path, echo: Callable[[str], None] = print) -> dict[str, str]:
    """Create the databases, then start every service not yet running; returns the shell env."""
    from glue.adapters import airflow
    from glue.settings import load_settings

    started = time.perf_counter()
    created = ensure_databases()
    echo(f"postgres: databases {', '.join(postgres(n)['database'] for n in DATABASES)}"
         + (f" (created {', '.join(created)})" if created else " (all there)"))
    echo(f"redis: {check_redis()} answers")
    state = state_dir(project_dir)
    procs = services(project_dir)
    settings = load_settings("prod", project_dir)
    airflow.init_airflow(settings)  # `airflow db migrate` (FAB's tables too), once
    if airflow.ensure_admin_user(settings, ADMIN, credentials(state)["GLUE_AIRFLOW_ADMIN_PASSWORD"]):
        echo(f"airflow: user {ADMIN} (role Admin) signs in with GLUE_AIRFLOW_ADMIN_PASSWORD")
    for service in procs:
        pid = _pid(state, service.name)
        if pid is not None:
            echo(f"{service.name}: already running (pid {pid})")
            continue
        log = state / "logs" / f"{service.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(service.command, env={**os.environ, **service.env}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=project_dir)
        (state / "pids").mkdir(parents=True, exist_ok=True)
        (state / "pids" / f"{service.name}.pid").write_text(str(proc.pid))
        _wait(service, proc, log)
        echo(f"{service.name}: started (pid {proc.pid}{', ' + service.address if service.address else ''})")
    echo(f"service set up in {time.perf_counter() - started:.1f} s; `eval \"$(glue services env)\"` "
         "points this shell at it")
    return glue_env(state, credentials(state))


def stop(project_dir: Path, echo: Callable[[str], None] = print, grace: float = 20.0) -> None:
    """Stop the set: SIGTERM to every process group at once, SIGKILL to those still there after `grace`."""
    state = state_dir(project_dir)
    pids = {p.stem: _pid(state, p.stem) for p in sorted((state / "pids").glob("*.pid"))}
    running = {name: pid for name, pid in pids.items() if pid is not None}
    for pid in running.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in running.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for name, pid in running.items():
        killed = _alive(pid)
        if killed:
            _signal(pid, signal.SIGKILL)
        echo(f"{name}: stopped (pid {pid}{', killed after ' + str(int(grace)) + ' s' if killed else ''})")
    for name in pids:
        (state / "pids" / f"{name}.pid").unlink(missing_ok=True)
    if not running:
        echo("no service of the set is running")


def status(project_dir: Path) -> list[tuple[str, int | None, str]]:
    """(name, pid or None, address) of each service."""
    state = state_dir(project_dir)
    addresses = {"mlflow": mlflow_url(), "airflow-api": airflow_url()}
    return [(name, _pid(state, name), addresses.get(name, "")) for name in SERVICE_NAMES]


def shell_env(project_dir: Path) -> dict[str, str]:
    state = state_dir(project_dir)
    return glue_env(state, credentials(state))


# --- helpers ----------------------------------------------------------------------------------------


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (not whatever is first on PATH)."""
    return str(Path(sys.executable).parent / name)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _celery_up(env: dict[str, str]) -> bool:
    """The worker answers a Celery ping through the broker (what the scheduler's tasks need)."""
    proc = subprocess.run([_bin("celery"), "--app", "airflow.providers.celery.executors.celery_executor.app",
                           "inspect", "ping", "--timeout", "3"], env={**os.environ, **env},
                          capture_output=True, text=True)
    return proc.returncode == 0 and "pong" in proc.stdout


def _wait(service: Service, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not service.ready():
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise GlueError(f"{service.name} exited with {proc.returncode} while starting "
                            f"(log {log}):\n{tail}")
        if time.monotonic() > deadline:
            raise GlueError(f"{service.name} not ready after {_START_TIMEOUT:.0f} s (log {log})")
        time.sleep(1.0)


def _pid(state: Path, name: str) -> int | None:
    """The pid of a running service of the set, None if it is not running (stale pid files ignored)."""
    path = state / "pids" / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    return pid


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the whole session: api-server and celery fork workers


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True

"""The prod profile for real: `glue services start` starts the set, and the loop runs on it.

Against the PostgreSQL and Redis services running on 127.0.0.1 (DESIGN.md). Everything the set
uses belongs to this test run (tests/services.py): its databases (MLflow, MLflow auth, Feast's
registry and offline store, Airflow) carry the run's prefix, Feast's online store and Airflow's
Celery broker each get an empty Redis db claimed for the run, the ports are free ones; all of it is
removed when the run ends. In order:

1. `glue services start` brings up MLflow (basic auth, proxied artifacts) and Airflow (the FAB auth
   manager) with a Celery worker; anonymous requests to either are refused, a Viewer reads DAGs but
   may not trigger one, the credentials are in a 0600 file;
2. the README's sequence in one project: `glue run` on the local profile, then `glue run` on prod
   (dvc repro re-runs what the prod stores lack): features in PostgreSQL and Redis, the run and
   model in the tracking server, a champion there;
3. a glue_monitoring__<model> DAG run triggered through Airflow's REST API, executed by the Celery worker;
4. customer-spend wants a person's approval on prod (params.yaml approval.by person): the prod
   `glue run` leaves it without a champion, and its training DAG run waits in the human-in-the-loop
   task until a person approves through Airflow's REST API (what the Required Actions page sends);
5. `glue serve` on prod answers from Redis with the server's champion;
6. `glue services stop` leaves no process behind.

~7 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.conftest import clone_project

pytestmark = [pytest.mark.prod, pytest.mark.slow, pytest.mark.timeout(1500)]

GLUE = str(Path(sys.executable).with_name("glue"))
DEMO = {"days": 20, "transactions_per_day": 400, "customers": 800, "merchants": 60, "fraud_rate": 0.04,
        "label_delay_days": 3}
LAST_DAY = "2026-01-20"
APPROVED_MODEL = "customer-spend"  # a person approves its champion on prod (the fraud model: the gate)
APPROVAL = {"by": "person", "approvers": ["admin"], "timeout_hours": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _glue(args: list[str], env: dict[str, str], root: Path, timeout: float = 900) -> str:
    proc = subprocess.run([GLUE, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"glue {' '.join(args)} failed:\n{output}"
    return proc.stdout


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh clone with the service set running; stopped (and checked stopped) afterwards."""
    root = clone_project(tmp_path_factory.mktemp("prod") / "clone", DEMO,
                         models={APPROVED_MODEL: {"approval": APPROVAL}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE_", "MLFLOW_", "FEAST_"))}
    env |= {"PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            "GLUE_PROJECT_DIR": str(root), "GLUE_SERVICES_DB_PREFIX": services.PREFIX, "TQDM_DISABLE": "1",
            "GLUE_REDIS_DB": str(services.claim_redis_db()),
            "GLUE_REDIS_BROKER_DB": str(services.claim_redis_db()),
            "GLUE_MLFLOW_PORT": str(_free_port()), "GLUE_AIRFLOW_PORT": str(_free_port()),
            "GX_ANALYTICS_ENABLED": "false"}
    try:
        started = _glue(["services", "start"], env, root, timeout=600)
        assert "airflow-worker: started" in started, started
        local_env = dict(env)
        for line in _glue(["services", "env"], env, root).splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        env["GLUE_TEST_LOCAL_ENV"] = json.dumps(local_env)  # the shell before `eval $(glue services env)`
        yield root, env
    finally:
        subprocess.run([GLUE, "services", "stop"], cwd=root, env=env, capture_output=True, timeout=120)
    pids = list((root / ".glue" / "prod" / "pids").glob("*.pid"))
    assert not pids, f"pid files left after stop: {pids}"


def _status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
            method: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _airflow_token(root: Path, env: dict[str, str], user: str = "admin", password: str | None = None) -> str:
    """A JWT of Airflow's auth manager (FAB) for `user` (default the set's admin)."""
    from glue import service_state

    if password is None:
        password = service_state.credentials(root / ".glue" / "prod")["GLUE_AIRFLOW_ADMIN_PASSWORD"]
    status, body = _status(f"{_airflow(env)}/auth/token", {"content-type": "application/json"},
                           json.dumps({"username": user, "password": password}).encode())
    assert status in (200, 201), body
    return json.loads(body)["access_token"]


def _airflow(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['GLUE_AIRFLOW_PORT']}"


def _task_states(run_url: str, headers: dict[str, str]) -> dict[str, str]:
    """{task id: state} of one DAG run (`run_url`: its /api/v2/dags/<dag>/dagRuns/<run> address)."""
    tasks = json.loads(_status(f"{run_url}/taskInstances", headers)[1])["task_instances"]
    return {t["task_id"]: t["state"] for t in tasks}


def _final_state(run_url: str, headers: dict[str, str], seconds: float) -> str:
    """The DAG run's state once it succeeded or failed, or its state when `seconds` have passed."""
    deadline = time.monotonic() + seconds
    state = "running"
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(5)
        state = json.loads(_status(run_url, headers)[1])["state"]
    return state


def test_anonymous_requests_are_refused_and_credentials_are_private(
        prod: tuple[Path, dict[str, str]]) -> None:
    root, env = prod
    mlflow = env["GLUE_MLFLOW_TRACKING_URI"]
    assert _status(f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1")[0] == 401
    assert _status(f"{mlflow}/")[0] == 401  # the UI too
    assert _status(f"{_airflow(env)}/api/v2/dags")[0] == 401
    assert _status(f"{_airflow(env)}/auth/token", {"content-type": "application/json"},
                   json.dumps({"username": "admin", "password": "admin"}).encode()  # pragma: allowlist secret
                   )[0] == 401

    import base64

    basic = base64.b64encode(f"admin:{env['MLFLOW_TRACKING_PASSWORD']}".encode()).decode()
    assert _status(f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1",
                   {"Authorization": f"Basic {basic}"})[0] == 200
    # MLflow's default permission is NO_PERMISSIONS: a user who signs in but was granted nothing
    # sees nothing (the admin can read the Default experiment, this user cannot)
    viewer = {"username": f"viewer-{uuid.uuid4().hex[:6]}", "password": uuid.uuid4().hex}
    assert _status(f"{mlflow}/api/2.0/mlflow/users/create", {"Authorization": f"Basic {basic}",
                   "content-type": "application/json"}, json.dumps(viewer).encode())[0] == 200
    as_viewer = base64.b64encode(f"{viewer['username']}:{viewer['password']}".encode()).decode()
    default_experiment = f"{mlflow}/api/2.0/mlflow/experiments/get?experiment_id=0"
    assert _status(default_experiment, {"Authorization": f"Basic {basic}"})[0] == 200
    assert _status(default_experiment, {"Authorization": f"Basic {as_viewer}"})[0] == 403
    status, body = _status(f"{_airflow(env)}/api/v2/dags",
                           {"Authorization": f"Bearer {_airflow_token(root, env)}"})
    assert status == 200
    assert {d["dag_id"] for d in json.loads(body)["dags"]} >= {
        "glue_features", "glue_monitoring__fraud-detector", "glue_training__fraud-detector"}

    # Airflow's users and roles are the FAB auth manager's: the admin adds a Viewer through its
    # REST API; the Viewer reads the DAGs but may not trigger one (403), a wrong password gets 401
    admin = {"Authorization": f"Bearer {_airflow_token(root, env)}", "content-type": "application/json"}
    reader = {"username": f"reader-{uuid.uuid4().hex[:6]}", "password": uuid.uuid4().hex}
    created, body = _status(f"{_airflow(env)}/auth/fab/v1/users", admin, json.dumps(
        {**reader, "email": f"{reader['username']}@localhost", "first_name": "r", "last_name": "r",
         "roles": [{"name": "Viewer"}]}).encode())
    assert created in (200, 201), body
    token = _airflow_token(root, env, reader["username"], reader["password"])
    as_reader = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    assert _status(f"{_airflow(env)}/api/v2/dags", as_reader)[0] == 200
    refused, body = _status(f"{_airflow(env)}/api/v2/dags/glue_features/dagRuns", as_reader,
                            json.dumps({"logical_date": None}).encode())
    assert refused == 403, body
    wrong = {**reader, "password": reader["password"][::-1]}
    assert _status(f"{_airflow(env)}/auth/token", {"content-type": "application/json"},
                   json.dumps(wrong).encode())[0] == 401

    credentials = root / ".glue" / "prod" / "credentials.env"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    tracked = subprocess.run(["git", "grep", "-l", env["MLFLOW_TRACKING_PASSWORD"]], cwd=root,
                             capture_output=True, text=True)
    assert tracked.stdout == ""  # generated, never in the repo


def test_the_local_loop_then_the_prod_loop_in_one_project(prod: tuple[Path, dict[str, str]]) -> None:
    """The README's sequence: `glue run` (local), then the services, `eval "$(glue services env)"`,
    `glue run` again. DVC re-runs the stages that write to stores, so the champion and the features
    are in the prod stores, not only in the local ones."""
    import redis
    from mlflow import MlflowClient

    root, env = prod
    local = _glue(["run"], json.loads(env["GLUE_TEST_LOCAL_ENV"]), root)
    assert "champion in sqlite:///./.glue/mlflow.db: fraud-detector version 1" in local, local[-3000:]

    out = _glue(["run"], env, root)
    assert "is cached - skipping run" not in out
    assert f"champion in {env['GLUE_MLFLOW_TRACKING_URI']}: fraud-detector version 1" in out, out[-3000:]
    assert json.loads((root / ".glue" / "profile.json").read_text())["profile"] == "prod"

    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")})
    client = MlflowClient(env["GLUE_MLFLOW_TRACKING_URI"], env["GLUE_MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert champion.tags["glue.feast_feature_service"] == "fraud_model_v1"
    assert (root / ".glue" / "prod" / "mlartifacts").is_dir()

    feast = subprocess.run([str(Path(sys.executable).with_name("feast")), "-f", "prod/feature_store.yaml",
                            "feature-views", "list"], cwd=root / "feature_repo", env=env,
                           capture_output=True, text=True)
    assert feast.returncode == 0, feast.stderr
    assert "customer_transactions" in feast.stdout and "merchant_risk" in feast.stdout
    online = redis.Redis("127.0.0.1", 6379, db=int(env["GLUE_REDIS_DB"]))
    assert online.dbsize() > 100  # the materialized customers and merchants (+ the run's owner key)
    assert env["FEAST_POSTGRES_DB"] == services.database("feast")

    # the model that wants a person on prod: it passed the gate, and waits; no champion there
    assert f"champion in {env['GLUE_MLFLOW_TRACKING_URI']}: {APPROVED_MODEL}: none" in out, out[-3000:]
    waiting = client.get_model_version(APPROVED_MODEL, "1")
    assert waiting.tags["glue.gate.decision"] == "awaiting_approval"
    assert "champion" not in client.get_registered_model(APPROVED_MODEL).aliases
    gate = json.loads((root / "metrics" / APPROVED_MODEL / "gate.json").read_text())
    assert gate["awaiting_approval"] is True and gate["promoted"] is False

    again = _glue(["run"], env, root)  # nothing changed: DVC runs nothing, the stores hold it all
    assert "re-ran from stage" not in again and "Running stage 'train'" not in again, again[-3000:]


def test_a_dag_run_through_the_api_is_executed_by_the_celery_worker(
        prod: tuple[Path, dict[str, str]]) -> None:
    root, env = prod
    headers = {"Authorization": f"Bearer {_airflow_token(root, env)}", "content-type": "application/json"}
    base = f"{_airflow(env)}/api/v2/dags/glue_monitoring__fraud-detector"
    assert _status(base, headers, json.dumps({"is_paused": False}).encode(), "PATCH")[0] == 200
    run_id = f"prod-test-{uuid.uuid4().hex[:8]}"
    trigger = {"logical_date": f"{LAST_DAY}T00:00:00Z", "dag_run_id": run_id}
    status, body = _status(f"{base}/dagRuns", headers, json.dumps(trigger).encode())
    assert status == 200, body
    run_url = f"{base}/dagRuns/{run_id}"
    state = _final_state(run_url, headers, 420)
    states = _task_states(run_url, headers)
    assert state == "success", states
    assert states["check"] == "success"
    worker_log = (root / ".glue" / "prod" / "logs" / "airflow-worker.log").read_text()
    assert run_id in worker_log  # the Celery worker ran it, not the scheduler's process


def test_a_person_approves_the_champion_in_the_training_dags_approval_step(
        prod: tuple[Path, dict[str, str]]) -> None:
    """The training DAG of a model that wants a person, run by the scheduler and the Celery worker:
    it stops in `approve` (awaiting input) with the champion unmoved, and moves it only after a
    person's Approve, which is then on the model version and its card with the person's name."""
    from mlflow import MlflowClient

    root, env = prod
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")})
    client = MlflowClient(env["GLUE_MLFLOW_TRACKING_URI"], env["GLUE_MLFLOW_TRACKING_URI"])
    headers = {"Authorization": f"Bearer {_airflow_token(root, env)}", "content-type": "application/json"}
    dag_id = f"glue_training__{APPROVED_MODEL}"
    base = f"{_airflow(env)}/api/v2/dags/{dag_id}"
    # Unpaused, the scheduler starts the latest weekly run at once (catchup off): that run is the
    # one under test. A run triggered beside it would wait behind it (max_active_runs 1) while it
    # waits for a person: that is what hung this test before.
    assert _status(base, headers, json.dumps({"is_paused": False}).encode(), "PATCH")[0] == 200
    deadline = time.monotonic() + 120
    runs: list[dict] = []
    while not runs and time.monotonic() < deadline:
        time.sleep(2)
        runs = json.loads(_status(f"{base}/dagRuns", headers)[1])["dag_runs"]
    assert [r["run_type"] for r in runs] == ["scheduled"], runs
    run_id = runs[0]["dag_run_id"]
    run_url = f"{base}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    deadline = time.monotonic() + 420
    while _task_states(run_url, headers).get("approve") != "awaiting_input" and time.monotonic() < deadline:
        assert json.loads(_status(run_url, headers)[1])["state"] != "failed", _task_states(run_url, headers)
        time.sleep(5)
    now = _task_states(run_url, headers)
    assert now["approve"] == "awaiting_input", now
    assert now.get("promote") in (None, "none"), now  # not run: it waits for the answer
    challenger = client.get_model_version_by_alias(APPROVED_MODEL, "challenger")
    assert challenger.version != "1"  # trained by this run
    assert "champion" not in client.get_registered_model(APPROVED_MODEL).aliases  # nothing moved yet

    detail_url = f"{run_url}/taskInstances/approve/-1/hitlDetails"
    status, body = _status(detail_url, headers)
    assert status == 200, body
    detail = json.loads(body)
    assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False
    assert f"Promote {APPROVED_MODEL} version {challenger.version} to champion?" == detail["subject"]
    assert "passes the gate" in detail["body"]
    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "residuals checked"}}
    status, body = _status(detail_url, headers, json.dumps(answer).encode(), "PATCH")
    assert status == 200, body

    state = _final_state(run_url, headers, 300)
    assert state == "success", _task_states(run_url, headers)
    champion = client.get_model_version_by_alias(APPROVED_MODEL, "champion")
    assert champion.version == challenger.version
    assert champion.tags["glue.gate.decision"] == "passed" and champion.tags["glue.gate.approver"] == "admin"
    approval = champion.tags["glue.gate.approval"]
    assert approval.startswith(f"approved by admin (Airflow {dag_id} run {run_id}) at ")
    assert approval.endswith(": residuals checked")
    card = json.loads(Path(client.download_artifacts(champion.run_id, "model_card.json",
                                                     str(root / ".glue"))).read_text())
    assert card["gate"]["approver"] == approval
    assert client.get_model_version(APPROVED_MODEL, "1").tags["glue.gate.decision"] == "awaiting_approval"


def test_glue_serve_answers_from_redis_with_the_servers_champion(
        prod: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from glue import features, serving
    from glue.settings import load_settings

    root, env = prod
    for key, value in env.items():
        if key.startswith(("GLUE_", "MLFLOW_", "FEAST_")):
            monkeypatch.setenv(key, value)
    settings = load_settings("prod", root)
    assert settings.feast_yaml.name == "feature_store.yaml" and settings.feast_yaml.parent.name == "prod"
    tx = features.read_events(settings).tail(5)
    body = {"instances": [
        {"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
         "merchant_id": int(r.merchant_id), "amount": float(r.amount), "channel": str(r.channel),
         "card_present": bool(r.card_present), "event_timestamp": f"{LAST_DAY}T23:00:00Z"}
        for r in tx.itertuples()]}
    with TestClient(serving.create_app(settings, serving.ServingParams(poll_seconds=0.5))) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        answer = client.post("/models/fraud-detector/predict", json=body)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 5 and all(p["arm"] == "champion" for p in predictions)
    assert answer.json()["model"]["alias"] == "champion"

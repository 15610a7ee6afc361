"""The MLflow server goes down during a run and while serving; nothing is lost and it recovers.

A real `mlflow server` (SQLite behind it, on a free loopback port) holds the tracking store and the
registry of a small built project; the test stops it and starts it again on the same store:

- `glue evaluate` / `glue promote` while it is down: exit 69, a one-line error naming the server's
  address, no traceback, the champion unchanged; the same commands when it is back: done.
- `glue train` whose server dies in the middle of the run: the same clear error; the re-run when it
  is back registers one version, and whatever the dead attempt registered is gone.
- `glue serve` while it is down: every request answered by the champion in memory (no 5xx, the
  prediction log 1:1 with the answers); when it is back, a champion moved in the registry is
  picked up by the server by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from glue import contract, features, training
from glue.settings import Settings, get_settings
from tests.conftest import build_small_champion_project, copy_project_config, one_openmp_thread
from tests.private_services import GlueServe, MlflowServer

SPEND = "customer-spend"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, MlflowServer]]:
    """A small project whose tracking store and registry are a real MLflow server."""
    base = tmp_path_factory.mktemp("outages")
    root = copy_project_config(base / "project")
    server = MlflowServer(base)
    server.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    mp.delenv("GLUE_PROFILE", raising=False)
    for name in ("GLUE_MLFLOW_TRACKING_URI", "GLUE_MLFLOW_REGISTRY_URI"):
        mp.setenv(name, server.url)
    mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a down server is reported in seconds
    mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        yield build_small_champion_project(root), server
    finally:
        server.stop()
        get_settings.cache_clear()
        mp.undo()


def _glue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "glue"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})


def _assert_named_outage(proc: subprocess.CompletedProcess, server: MlflowServer) -> None:
    assert proc.returncode == 69, proc.stdout + proc.stderr
    assert f"error: the MLflow tracking server {server.url} is unreachable" in proc.stderr, proc.stderr
    assert "run it again once the service is back" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_gate_stops_with_the_server_named_and_completes_when_it_is_back(
        served: tuple[Settings, MlflowServer]) -> None:
    from glue.adapters import mlflow

    settings, server = served
    champion = mlflow.get_alias(SPEND, contract.CHAMPION).version
    with one_openmp_thread():
        challenger = training.train(settings, settings.model(SPEND)).version
    evaluated = _glue("evaluate", "--model", SPEND)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    server.stop()
    try:
        _assert_named_outage(_glue("promote", "--model", SPEND), server)
        _assert_named_outage(_glue("evaluate", "--model", SPEND), server)
    finally:
        server.start()
    assert mlflow.get_alias(SPEND, contract.CHAMPION).version == champion  # nothing moved
    assert mlflow.get_alias(SPEND, contract.CHALLENGER).version == challenger

    done = _glue("promote", "--model", SPEND)  # the same command, the server back: it completes
    assert done.returncode == 0, done.stdout + done.stderr
    gate = json.loads((settings.outputs_dir / "metrics" / SPEND / "gate.json").read_text())
    assert gate["challenger_version"] == challenger
    assert mlflow.get_alias(SPEND, contract.CHAMPION).version == gate["champion_after"]


def test_a_training_whose_server_dies_mid_run_is_redone_once_when_it_is_back(
        served: tuple[Settings, MlflowServer]) -> None:
    from mlflow import MlflowClient

    from glue.adapters import mlflow

    settings, server = served
    client = MlflowClient(server.url, server.url)
    experiment = client.get_experiment_by_name(f"{SPEND}-training").experiment_id
    finished = len(client.search_runs([experiment], "attributes.status = 'FINISHED'"))
    champion = mlflow.get_alias(SPEND, contract.CHAMPION).version
    proc = subprocess.Popen([str(BIN / "glue"), "train", "--model", SPEND], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        deadline = time.monotonic() + 120  # the run has started: then the server goes
        while not client.search_runs([experiment], "attributes.status = 'RUNNING'"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        server.stop()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.start()
    _assert_named_outage(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), server)

    again = _glue("train", "--model", SPEND)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = client.search_runs([experiment])
    assert sum(r.info.status == "FINISHED" for r in runs) == finished + 1
    assert not [r for r in runs if r.info.status == "RUNNING"]  # the dead attempt's run is ended
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{SPEND}'")}
    registered = {str(v.version) for v in client.search_model_versions(f"name = '{SPEND}'")
                  if client.get_run(v.run_id).info.status == "FINISHED"}
    assert versions == registered  # no version of the dead attempt left
    assert mlflow.get_alias(SPEND, contract.CHAMPION).version == champion


def test_serving_answers_from_memory_while_the_registry_is_down_and_follows_it_when_back(
        served: tuple[Settings, MlflowServer]) -> None:
    from glue.adapters import mlflow

    settings, server = served
    champion = mlflow.get_alias(SPEND, contract.CHAMPION).version
    with one_openmp_thread():
        other = training.train(settings, settings.model(SPEND)).version  # a version to move to
    events = features.read_events(settings)  # customers of the last day are in the online store
    last = events["event_timestamp"] >= events["event_timestamp"].dt.floor("D").max()
    customers = [int(c) for c in events[last]["customer_id"].unique()[:40]]
    answers, failures = [], []

    def ask(http: httpx.Client, customer: int) -> str | None:
        try:
            reply = http.post(f"/models/{SPEND}/predict", json={"customer_id": customer})
        except httpx.HTTPError as exc:
            failures.append(f"{customer}: {exc}")
            return None
        if reply.status_code != 200:
            failures.append(f"{customer}: HTTP {reply.status_code} {reply.text[:200]}")
            return None
        answers.append(reply.json()["request_id"])
        return reply.json()["model"]["version"]

    serve = GlueServe(settings.state_dir / "serve.log")
    try:
        server.stop()
        try:
            time.sleep(1.0)  # several registry polls fail meanwhile
            down = {ask(serve.http, c) for c in customers}
            assert serve.http.get("/health").status_code == 200
        finally:
            server.start()
        mlflow.set_alias(SPEND, contract.CHAMPION, other)  # moved while the server answered
        deadline = time.monotonic() + 30
        while ask(serve.http, customers[0]) != other:
            assert time.monotonic() < deadline, ("the server never followed the registry back:\n"
                                                 + serve.log.read_text()[-3000:])
            time.sleep(0.2)
    finally:
        mlflow.set_alias(SPEND, contract.CHAMPION, champion)
        serve.stop()
    output = serve.log.read_text()

    assert failures == [], failures[:5]
    assert down == {champion}  # the champion in memory answered every request meanwhile
    assert "registry unreachable, keeping" in output
    logged = [json.loads(line)["request_id"] for file in (settings.state_dir / "predictions").glob("*.jsonl")
              for line in file.read_text().splitlines()]
    assert sorted(logged) == sorted(answers)  # one log line per answer, none lost

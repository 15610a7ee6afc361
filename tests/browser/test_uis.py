"""The MLflow UI and the Airflow UI of the local profile, as a person sees them in a browser.

One small project per module (15 demo days x 200 transactions, validated, features built, a model
trained and promoted to `champion`; ~25 s), then one `airflow dags test` run of glue_features
while `mlflow server` and `airflow api-server` start on free ports. Headless Chromium (Selenium)
then opens the pages; every page is saved as a screenshot under $GLUE_TEST_ARTIFACTS (default
test-artifacts/browser/), and a page that never shows what it should leaves a screenshot and its
HTML there too. Without Chromium and chromedriver the tests are skipped with the install command
(`apt-get install chromium chromium-driver`); with GLUE_REQUIRE_BROWSER=1 (set by .ci/run, which
installs them) they fail instead, so CI never passes on a skipped browser check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glue.adapters import airflow
from glue.settings import Settings, get_settings

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

REPO_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS_ENV = "GLUE_TEST_ARTIFACTS"
MODEL = "fraud-detector"
PAGE_TIMEOUT = 60.0  # seconds a page may take to show what it should
SERVER_TIMEOUT = 120.0  # seconds a server may take to answer its health check
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--window-size=1600,1000")
INSTALL_HINT = "apt-get install chromium chromium-driver"
REQUIRE_ENV = "GLUE_REQUIRE_BROWSER"  # "1": a missing browser fails the tests instead of skipping them
# Debian's name first; the others are what Ubuntu and GitHub's runner images install.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class Server:
    """One UI server started by the tests: its process (a session of its own), URL and log."""

    name: str
    proc: subprocess.Popen
    url: str
    health: str
    log: Path

    def wait_ready(self, timeout: float = SERVER_TIMEOUT) -> str:
        """The base URL, once the health endpoint answers 200; fail with the log's tail if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before answering "
                            f"{self.health}:\n{_tail(self.log)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + self.health, timeout=5) as answer:
                    if answer.status == 200:
                        return self.url
            time.sleep(0.5)
        pytest.fail(f"{self.name} did not answer {self.url}{self.health} within {timeout:.0f} s:\n"
                    f"{_tail(self.log)}")


@dataclass
class Uis:
    """The two servers and what the project holds that their pages must show."""

    mlflow: Server
    airflow: Server
    features_run_id: str  # the glue_features run made by `airflow dags test`
    airflow_passwords: Path  # the simple auth manager's generated passwords file


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots (and the servers' logs) go: $GLUE_TEST_ARTIFACTS or test-artifacts/browser/."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or REPO_DIR / "test-artifacts" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium driven through chromedriver; skips (fails under GLUE_REQUIRE_BROWSER=1)
    when either is missing.

    Requested first by every test, so a machine without Chromium stops before the project is built.
    """
    chromium = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver_bin = shutil.which("chromedriver") or shutil.which(
        "chromedriver", path=os.environ.get("CHROMEWEBDRIVER"))  # GitHub's runner images set it
    if not chromium or not driver_bin:
        missing = " and ".join(name for name, found in (("chromium", chromium), ("chromedriver", driver_bin))
                               if not found)
        message = (f"{missing} not found on PATH: the browser tests need them; install with "
                   f"`{INSTALL_HINT}` (Debian/Ubuntu, as root)")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1: a skipped browser test fails)", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=ChromeService(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A project with a champion (version 1) in its sqlite MLflow store and the DAGs in dags/.

    tests/conftest.py's small champion project (as test_serving uses), plus a copy of dags/
    (the Airflow DAG folder of the local profile is <project>/dags).
    """
    from tests.conftest import build_small_champion_project, copy_project_config

    root = copy_project_config(tmp_path_factory.mktemp("browser") / "project")
    shutil.copytree(REPO_DIR / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    mp.delenv("GLUE_PROFILE", raising=False)
    settings = build_small_champion_project(root)
    yield settings
    get_settings.cache_clear()
    mp.undo()


@pytest.fixture(scope="module")
def uis(browser: Any, project: Settings, artifacts: Path) -> Iterator[Uis]:
    """`mlflow server` and `airflow api-server` on free ports, and one finished glue_features run.

    Both servers boot while `airflow dags test` runs (the slow part); each is stopped with its
    whole process group when the module ends, whatever happened. (`browser` first: a machine
    without Chromium fails before anything is built.)
    """
    servers: list[Server] = []
    try:
        port = _free_port()
        servers.append(_start(
            "mlflow server",
            [_bin("mlflow"), "server", "--backend-store-uri", project.mlflow_tracking_uri,
             "--artifacts-destination", str(project.mlflow_artifacts_dir),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            # No job runner (GenAI evaluation jobs): not on these pages, and it takes 10 s to stop.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            url=f"http://127.0.0.1:{port}", health="/health",
            log=artifacts / "mlflow-server.log",
        ))
        airflow.init_airflow(project)  # the api-server needs the metadata DB
        port = _free_port()
        servers.append(_start(
            "airflow api-server",
            [_bin("airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env={**os.environ, **airflow.airflow_env(project), "AIRFLOW__API__PORT": str(port)},
            url=f"http://127.0.0.1:{port}", health="/api/v2/monitor/health",
            log=artifacts / "airflow-api-server.log",
        ))
        run = airflow.test_dag(project, "glue_features", "2026-01-15")
        assert run.task_states == {"validate": "success", "features": "success"}, run.summary()
        airflow.serialize_dags(project)  # what `glue airflow init` does: every model's DAGs in the UI
        yield Uis(mlflow=servers[0], airflow=servers[1], features_run_id=run.run_id,
                  airflow_passwords=airflow.password_file(project))
    finally:
        _stop([server.proc for server in servers])


# --- MLflow -------------------------------------------------------------------------------------


def test_mlflow_ui_shows_the_champion_alias_on_version_1(browser: Any, uis: Uis, artifacts: Path) -> None:
    base = uis.mlflow.wait_ready()
    browser.get(f"{base}/#/models/{MODEL}")
    _wait_for(browser, artifacts, "mlflow-model", f"model {MODEL!r}: version 1 with alias 'champion'",
              _version_alias(1, "champion"))
    _screenshot(browser, artifacts, "mlflow-model")


def test_mlflow_ui_lists_the_training_runs_with_the_champions_run(
    browser: Any, uis: Uis, project: Settings, artifacts: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(project.mlflow_tracking_uri, project.mlflow_registry_uri)
    experiment_name = project.model(MODEL).experiment_name
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, experiment_name
    runs = client.search_runs([experiment.experiment_id])
    champion_run = client.get_model_version_by_alias(MODEL, "champion").run_id
    assert champion_run in {r.info.run_id for r in runs}

    base = uis.mlflow.wait_ready()
    browser.get(f"{base}/#/experiments/{experiment.experiment_id}/runs")
    for run in runs:
        _wait_for(browser, artifacts, "mlflow-runs",
                  f"run {run.info.run_name!r} ({run.info.run_id}) in experiment {experiment.name!r}",
                  _run_link(run.info.run_id, run.info.run_name))
    _screenshot(browser, artifacts, "mlflow-runs")


# --- Airflow ------------------------------------------------------------------------------------


def test_airflow_ui_lists_the_dags_and_the_last_run(browser: Any, uis: Uis, project: Settings,
                                                     artifacts: Path) -> None:
    base = uis.airflow.wait_ready()
    _airflow_login(browser, uis, artifacts, next_path="/dags")
    browser.get(f"{base}/dags")
    for dag_id in airflow.dag_ids(project):
        _wait_for(browser, artifacts, "airflow-dags", f"DAG {dag_id!r} in the DAG list", _dag_card(dag_id))
    _wait_for(browser, artifacts, "airflow-dags",
              f"glue_features' latest run {uis.features_run_id!r} with state 'success' in the DAG list",
              _latest_run(uis.features_run_id, "success"))
    _screenshot(browser, artifacts, "airflow-dags")


def test_airflow_ui_shows_the_run_on_the_dag_page(browser: Any, uis: Uis, artifacts: Path) -> None:
    base = uis.airflow.wait_ready()
    _airflow_login(browser, uis, artifacts, next_path="/dags/glue_features")
    browser.get(f"{base}/dags/glue_features/runs")
    _wait_for(browser, artifacts, "airflow-dag-runs",
              f"run {uis.features_run_id!r} with state 'Success' on glue_features' Runs tab",
              _run_row(uis.features_run_id, "Success"))
    _screenshot(browser, artifacts, "airflow-dag-runs")


# --- page conditions: each returns the element(s) showing the fact, or a false value -------------


def _version_alias(version: int, alias: str) -> Callable[[Any], Any]:
    """The alias tag in the row of the model version's table that links to that version."""
    from selenium.webdriver.common.by import By

    xpath = (f"//*[@role='row'][.//a[contains(concat(@href, '$'), '/versions/{version}$')]]"
             f"//*[@title='{alias}'][contains(normalize-space(.), '{alias}')]")
    return lambda driver: driver.find_elements(By.XPATH, xpath)


def _run_link(run_id: str, run_name: str) -> Callable[[Any], Any]:
    """The run's link in the experiment's runs table, named as MLflow named the run."""
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> Any:
        links = driver.find_elements(By.CSS_SELECTOR, f"a[href$='/runs/{run_id}']")
        return [a for a in links if a.text.strip() == run_name]

    return found


def _dag_card(dag_id: str) -> Callable[[Any], Any]:
    """The DAG's entry (card or table row) in Airflow's DAG list."""
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> Any:
        return [a for a in driver.find_elements(By.CSS_SELECTOR, f"a[href$='/dags/{dag_id}']")
                if a.text.strip() == dag_id]

    return found


def _latest_run(run_id: str, state: str) -> Callable[[Any], Any]:
    """In glue_features' card of the DAG list: 'Latest Run' links to the run and shows its state."""
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> Any:
        for cell in driver.find_elements(By.CSS_SELECTOR, "[data-testid='latest-run']"):
            for link in cell.find_elements(By.CSS_SELECTOR, "a[href*='/dags/glue_features/runs/']"):
                if urllib.parse.unquote(link.get_attribute("href")).endswith(f"/runs/{run_id}"):
                    badges = link.find_elements(By.CSS_SELECTOR, f"[aria-label='{state}']")
                    if badges:
                        return [link, *badges]
        return []

    return found


def _run_row(run_id: str, state: str) -> Callable[[Any], Any]:
    """The table row of the DAG's Runs tab with the run id and its state."""
    from selenium.webdriver.common.by import By

    def found(driver: Any) -> Any:
        return [row for row in driver.find_elements(By.CSS_SELECTOR, "tr")
                if run_id in row.text and state in row.text]

    return found


# --- helpers ------------------------------------------------------------------------------------


def _wait_for(driver: Any, artifacts: Path, name: str, what: str, condition: Callable[[Any], Any]) -> Any:
    """Wait up to PAGE_TIMEOUT for `condition`; on timeout save the page and fail saying what was missing."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        shot = _screenshot(driver, artifacts, f"FAILED-{name}")
        (artifacts / f"FAILED-{name}.html").write_text(driver.page_source)
        body = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        pytest.fail(f"{driver.current_url} did not show {what} within {PAGE_TIMEOUT:.0f} s "
                    f"(screenshot {shot}); the page said:\n{body[:1500]}", pytrace=False)


def _airflow_login(driver: Any, uis: Uis, artifacts: Path, next_path: str) -> None:
    """Sign in through the simple auth manager's login form, once per browser session."""
    from selenium.webdriver.common.by import By

    driver.get(f"{uis.airflow.url}{next_path}")
    _wait_for(driver, artifacts, "airflow-login", "the login form or the Airflow UI",
              lambda d: d.find_elements(By.NAME, "username")
              or d.find_elements(By.CSS_SELECTOR, "[data-testid='nav-sidebar']"))
    if "/auth/login" not in driver.current_url:
        return  # the session is signed in already
    user, password = _airflow_credentials(uis.airflow_passwords)
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    _screenshot(driver, artifacts, "airflow-login")
    driver.find_element(By.CSS_SELECTOR, "form button[type='submit']").click()
    _wait_for(driver, artifacts, "airflow-login", f"the Airflow UI after signing in as {user!r}",
              lambda d: "/auth/login" not in d.current_url
              and d.find_elements(By.CSS_SELECTOR, "[data-testid='nav-sidebar']"))


def _airflow_credentials(passwords: Path) -> tuple[str, str]:
    """The user and password the api-server generated (simple auth manager's passwords file)."""
    deadline = time.monotonic() + 30
    while not passwords.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not passwords.is_file():
        pytest.fail(f"the Airflow api-server wrote no passwords file {passwords}")
    users = json.loads(passwords.read_text())
    assert users, f"{passwords} lists no user"
    return next(iter(users.items()))


def _screenshot(driver: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _start(name: str, command: list[str], env: dict[str, str], url: str, health: str, log: Path) -> Server:
    """Start a server in a session of its own (so its whole process group can be stopped)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(name=name, proc=proc, url=url, health=health, log=log)


def _stop(procs: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM each process group, SIGKILL what is left after `grace` s (workers included)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a server that ignored SIGTERM, or workers it left
        proc.wait()


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (not whatever is on PATH)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"

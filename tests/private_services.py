"""Services of a test's own that it may stop and start again: `mlflow server`, `redis-server`, PostgreSQL,
and `glue serve` itself.

Why not the machine's services: an outage test stops the service under a running glue command or
server, and the shared PostgreSQL and Redis serve everything else on the machine (other tests,
a user's prod set). Each server here runs on a free loopback port with its data in a folder of the
test's, keeps that data across stop() and start() (the point of an outage: the service comes
back with what it had), and is gone with the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from glue.serving.config import ENV_POLL_SECONDS

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        assert proc.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not start:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class MlflowServer:
    """`mlflow server` on one SQLite store; stop() and start() again keep the store."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.root / "mlflow-server.log").open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow-server.db'}",
             "--default-artifact-root", str(self.root / "mlflow-server-artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.root / "mlflow-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class RedisServer:
    """`redis-server` on a free port; stop() is a SIGTERM, on which Redis saves its data to disk
    (RDB, as a configured server does), and start() loads it again."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        log = self.root / "redis.log"
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.root), "--save", "3600 1", "--appendonly", "no", "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, self.proc, log, "redis-server")

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class PostgresServer:
    """A PostgreSQL cluster of its own (initdb, trust auth, fsync off) on a free port.

    PostgreSQL refuses to run as root: as root, the cluster belongs to `nobody`, in a folder under
    /tmp that user can reach (a pytest tmp_path is private to root).
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="glue-test-pg-"))
        self.port = free_port()
        self.data, self.log = self.folder / "data", self.folder / "postgres.log"
        self._as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "nobody")
        subprocess.run([*self._as, "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off")
        subprocess.run([*self._as, "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                        "start"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self._as, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True)

    def create_database(self, name: str) -> None:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c",
                        f'CREATE DATABASE "{name}"'], check=True, capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class GlueServe:
    """`glue serve` of the project GLUE_PROJECT_DIR names, on a free port, ready when built (GET /ready
    answers 200: the reloader has loaded every champion); stop() is a SIGTERM, as a process manager's.

    `http` is a keep-alive client of the server at `url`; the server's output goes to `log`; `env`
    is added to this process's environment.
    """

    def __init__(self, log: Path, poll_seconds: float = 0.2, timeout: float = 120,
                 env: dict[str, str] | None = None) -> None:
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("w") as out:
            self.proc = subprocess.Popen([str(BIN / "glue"), "serve", "--port", str(self.port)], stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env={**os.environ, ENV_POLL_SECONDS: str(poll_seconds),
                                              **(env or {})})
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"glue serve did not get ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            return self.http.get("/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

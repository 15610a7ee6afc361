"""The Ray adapter: the only glue module that imports ray.

Why an adapter: the `ray` profile needs four things from Ray and nothing else: a small cluster of
processes on this machine (`glue ray start|stop|status`), a driver connection, Ray Data to score a
batch in chunks with the model loaded once per worker, and joblib's ray backend for a
hyperparameter search. Feast's Ray offline store and compute engine (feature_repo/ray/
feature_store.yaml) connect to the same cluster on their own; glue only starts it.

The cluster is `ray start --head` plus `ray start --address` worker nodes, each started in a
session of its own and recorded in ``<state_dir>/ray/cluster.json``; stopping signals exactly the
processes of those sessions (never `ray stop`, which stops every Ray of the user on the machine).
It uses Ray's token authentication with a token of its own (``<state_dir>/ray/auth_token``, mode
0600): every node and every driver glue starts gets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH
(RayClusterSettings.auth_env); `glue ray env` prints them for Ray's and Feast's own CLIs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from glue.errors import GlueError, SettingsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from glue.settings import RayClusterSettings, Settings

_START_TIMEOUT = 120.0  # seconds for `ray start` and for every node to register
_STOP_GRACE = 15.0  # SIGTERM, then SIGKILL after this (`ray stop`'s own grace is 16 s)
_ROW = "__glue_row"  # the position of a row, carried through Ray Data to restore the order


@dataclass(frozen=True)
class ClusterStatus:
    """What `glue ray status` shows: the cluster's address, its nodes and the processes glue started."""

    address: str
    running: bool
    nodes: int  # alive nodes the cluster reports (0 when it does not answer)
    cpus: float
    object_store_mb: float
    processes: int  # processes of the sessions glue started
    temp_dir: Path | None
    logs: Path

    def summary(self) -> str:
        if not self.running:
            return f"ray: stopped (address {self.address}; logs {self.logs})"
        return (f"ray: running at {self.address}: {self.nodes} node(s), {self.cpus:g} CPU(s), "
                f"{self.object_store_mb:.0f} MB object store; {self.processes} processes "
                f"(temp dir {self.temp_dir}, logs {self.logs})")


def start_cluster(cluster: RayClusterSettings, state: Path) -> ClusterStatus:
    """Start the head and the worker nodes (each `ray start` in a session of its own); wait until
    every node has joined. A cluster glue already started is left as it is.

    `state` is where glue keeps the cluster's record and the `ray start` logs (<state_dir>/ray).
    """
    record = _read_record(state)
    if record and _session_pids(record["sessions"]):
        return cluster_status(cluster, state)
    if cluster.address_override:
        raise SettingsError(f"GLUE_RAY_ADDRESS={cluster.address_override}: glue starts no cluster when "
                            "told to use another one; unset it to start the local cluster")
    if _answers(cluster.host, cluster.port):
        raise GlueError(f"{cluster.host}:{cluster.port} is taken by a process glue did not start; choose "
                        "another port with GLUE_RAY_PORT")
    temp_dir = _temp_dir(state)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _write_token(cluster)
    node = ["--node-ip-address", cluster.host, "--num-cpus", str(cluster.cpus),
            "--object-store-memory", str(cluster.object_store_mb * 1024 * 1024), "--disable-usage-stats"]
    commands = [("head", ["--head", "--port", str(cluster.port), "--temp-dir", str(temp_dir),
                          "--include-dashboard", "false", "--ray-client-server-port", str(cluster.port + 1),
                          *node])]
    commands += [(f"worker-{i}", ["--address", cluster.address, *node])
                 for i in range(1, cluster.workers + 1)]
    sessions: dict[str, int] = {}
    try:
        for name, args in commands:
            sessions[name] = _ray_start(name, args, logs / f"{name}.log", cluster.auth_env())
            _write_record(state, {"address": cluster.address, "temp_dir": str(temp_dir),
                                  "sessions": sessions})
        _wait_for_nodes(cluster, len(commands))
    except BaseException:
        _stop_sessions(sessions)
        _write_record(state, None)
        raise
    return cluster_status(cluster, state)


def stop_cluster(state: Path) -> list[str]:
    """Stop the processes of the sessions glue started (SIGTERM, SIGKILL after a grace); returns
    what was stopped, one line per node."""
    record = _read_record(state)
    if not record:
        return []
    disconnect()
    stopped = _stop_sessions(record["sessions"])
    temp_dir = Path(record.get("temp_dir") or "")
    if temp_dir.name.startswith("glue-ray-"):
        _keep_node_logs(temp_dir, state / "logs" / "last-session")
        shutil.rmtree(temp_dir, ignore_errors=True)
    (state / "auth_token").unlink(missing_ok=True)
    _write_record(state, None)
    return stopped


def cluster_status(cluster: RayClusterSettings, state: Path) -> ClusterStatus:
    """The cluster's address, alive nodes and resources (asked of the cluster), and glue's processes."""
    record = _read_record(state) or {}
    pids = _session_pids(record.get("sessions", {}))
    nodes, cpus, store_mb = 0, 0.0, 0.0
    running = bool(pids) or bool(cluster.address_override)
    if running and _answers(*_host_port(cluster.address)):
        alive = [n for n in _nodes(cluster) if n.get("Alive")]
        nodes = len(alive)
        cpus = sum(n.get("Resources", {}).get("CPU", 0.0) for n in alive)
        store_mb = sum(n.get("Resources", {}).get("object_store_memory", 0.0) for n in alive) / 2**20
    else:
        running = False
    temp_dir = Path(record["temp_dir"]) if record.get("temp_dir") else None
    return ClusterStatus(address=cluster.address, running=running, nodes=nodes, cpus=cpus,
                         object_store_mb=store_mb, processes=len(pids), temp_dir=temp_dir,
                         logs=state / "logs")


def connect(settings: Settings) -> None:
    """Make this process a driver of the profile's cluster (once; Feast's Ray store then reuses it)."""
    cluster = _cluster(settings)
    if ray.is_initialized():
        return
    if not _answers(*_host_port(cluster.address)):
        raise GlueError(f"no Ray cluster answers at {cluster.address} (profile '{settings.profile}'); "
                        "start it with `glue ray start`")
    _use_auth(cluster)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")


def disconnect() -> None:
    """End this process's driver connection (the cluster keeps running)."""
    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def joblib_backend(settings: Settings) -> Iterator[None]:
    """joblib's work (a scikit-learn search's candidate fits) on the cluster's CPUs, not this process's."""
    import joblib
    from ray.util.joblib import register_ray

    connect(settings)
    register_ray()
    with joblib.parallel_backend("ray"):
        yield


def score_frame(settings: Settings, X: pd.DataFrame, load: Callable[[], Any],
                predict: Callable[[Any, str, pd.DataFrame], np.ndarray], task: str,
                batch_size: int = 10_000) -> np.ndarray:
    """Predictions for the rows of X from Ray Data: chunks of `batch_size` rows over a pool of
    actors (one per cluster CPU), each of which loads the model once with `load()`.

    Why actors and not tasks: a task would load the model for every chunk; an actor keeps it. The
    MLflow settings go with the actors (the model is read from the registry by each worker, not
    shipped through this process). The answer is in X's row order.
    """
    import numpy as np
    import pandas as pd

    connect(settings)
    if X.empty:
        return np.empty(0)
    env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "MLFLOW_REGISTRY_URI": settings.mlflow_registry_uri}
    rows = X.reset_index(drop=True).assign(**{_ROW: np.arange(len(X))})
    chunks = [rows.iloc[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    scored = ray.data.from_pandas(chunks).map_batches(
        _Scorer, fn_constructor_kwargs={"load": load, "predict": predict, "task": task, "env": env,
                                        "columns": list(X.columns)},
        batch_size=batch_size, batch_format="pandas", concurrency=min(actors, len(chunks)), num_cpus=1)
    out = scored.to_pandas()
    out = pd.DataFrame(out).sort_values(_ROW, kind="stable")
    if len(out) != len(X):
        raise GlueError(f"Ray Data returned {len(out)} scores for {len(X)} rows")
    return out["prediction"].to_numpy()


class _Scorer:
    """A Ray Data actor: the model, loaded once, answering chunk after chunk."""

    def __init__(self, load: Callable[[], Any], predict: Callable[[Any, str, pd.DataFrame], np.ndarray],
                 task: str, env: dict[str, str], columns: list[str]) -> None:
        os.environ.update(env)
        self.model = load()
        self.predict, self.task, self.columns = predict, task, columns

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        predictions = self.predict(self.model, self.task, batch[self.columns].astype("float64"))
        return pd.DataFrame({_ROW: batch[_ROW].to_numpy(), "prediction": predictions})


# --- helpers -------------------------------------------------------------------------------------


def _cluster(settings: Settings) -> RayClusterSettings:
    if settings.ray is None:
        raise SettingsError(f"profile '{settings.profile}' has no Ray cluster; select the ray profile "
                            "(GLUE_PROFILE=ray or glue --profile ray)")
    return settings.ray


def _temp_dir(state: Path) -> Path:
    """Ray's session folder: short (its Unix socket paths must fit 107 bytes), one per project."""
    digest = hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"glue-ray-{digest}"


def _read_record(state: Path) -> dict[str, Any] | None:
    path = state / "cluster.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(state: Path, record: dict[str, Any] | None) -> None:
    path = state / "cluster.json"
    if record is None:
        path.unlink(missing_ok=True)
        return
    state.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def _keep_node_logs(temp_dir: Path, dest: Path) -> None:
    """Keep the daemons' error logs and the raylets' logs of the session that ends (Ray writes them
    into its temp dir, which goes): why a worker process failed to start is in raylet.err."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    for log in temp_dir.glob("session_*/logs/*"):
        if log.is_file() and (log.suffix == ".err" or log.name.startswith(("raylet", "gcs_server"))):
            with contextlib.suppress(OSError):
                shutil.copy2(log, dest / log.name)


def _write_token(cluster: RayClusterSettings) -> None:
    """A new token for the cluster about to start, readable by its owner only (Ray's own
    generator is the same: 256 random bits in hex)."""
    if cluster.token_file is None:
        raise GlueError("a cluster glue starts needs its token file (RayClusterSettings.from_env(state))")
    cluster.token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(cluster.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))


def _use_auth(cluster: RayClusterSettings) -> None:
    """Make this process's next ray.init authenticate to glue's cluster with its token.

    Ray reads the mode and the token once and caches both (its own ``_enable_token_auth`` refreshes
    the config the same way); a process that was a driver of another cluster before must not keep
    that one's token.
    """
    env = cluster.auth_env()
    if not env:
        return
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the token file
    os.environ.update(env)
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _ray_start(name: str, args: list[str], log: Path, auth_env: dict[str, str]) -> int:
    """Run one `ray start` in a new session; returns the session id its daemons keep."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", **auth_env}
    with open(log, "ab") as out:
        proc = subprocess.Popen([ray_bin, "start", *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise GlueError(f"ray start ({name}) {'timed out' if code is None else f'exited with {code}'} "
                        f"(log {log}):\n{tail}")
    return proc.pid


def _wait_for_nodes(cluster: RayClusterSettings, expected: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    alive = 0
    while time.monotonic() < deadline:
        alive = sum(1 for n in _nodes(cluster) if n.get("Alive"))
        if alive >= expected:
            return
        time.sleep(1.0)
    raise GlueError(f"the Ray cluster at {cluster.address} has {alive} of {expected} nodes after "
                    f"{_START_TIMEOUT:.0f} s")


def _nodes(cluster: RayClusterSettings) -> list[dict[str, Any]]:
    """The cluster's node table, asked as a short-lived driver (or the one this process already is)."""
    if ray.is_initialized():
        return ray.nodes()
    _use_auth(cluster)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        return ray.nodes()
    finally:
        ray.shutdown()


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def _session_pids(sessions: dict[str, int]) -> set[int]:
    """Live processes of the given sessions and their descendants (Ray's workers set their own
    process group but keep the session; descendants are followed too, to be sure)."""
    table = _processes()
    wanted = set(sessions.values())
    pids = {pid for pid, (_, sid, state) in table.items() if sid in wanted and state != "Z"}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, state) in table.items() if ppid in pids and state != "Z"} - pids
        pids |= more
        grew = bool(more)
    return pids


def _stop_sessions(sessions: dict[str, int]) -> list[str]:
    stopped = []
    pids = _session_pids(sessions)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    while (left := _session_pids(sessions) & pids) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for name, sid in sessions.items():
        stopped.append(f"{name}: stopped (session {sid})")
    if left:
        stopped.append(f"{len(left)} process(es) killed after {_STOP_GRACE:.0f} s")
    return stopped


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0

"""Redis and PostgreSQL go down during a run and while serving; nothing is lost and all recovers.

A small project on the prod profile's Feast configuration (feature_repo/prod/feature_store.yaml:
the SQL registry and the batch-score warehouse on PostgreSQL, the online store on Redis), with a
PostgreSQL cluster and a redis-server of the test's own (tests/private_services.py) that it stops
and starts again; MLflow is a local file store (its server's outage is tests/integration/test_outages.py).

- Redis down while serving: every request is a 503 naming Redis and its address (no other status,
  no traceback); when Redis is back the server answers again by itself, with the same scores (the
  online rows survived), and the prediction log has one line per answer.
- Redis down under `glue features`: exit 69 naming Redis; the online rows are those of before; the
  re-run completes.
- PostgreSQL down while serving: the server keeps answering from Feast's cached registry; `glue
  features` and `glue score-batch` stop with exit 69 naming PostgreSQL and leave the scores table
  as it was; once it is back, the same commands complete. The champion never moves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from glue import contract, features
from glue.settings import Settings, get_settings
from tests.conftest import build_small_champion_project, copy_project_config
from tests.private_services import GlueServe, PostgresServer, RedisServer

FRAUD = "fraud-detector"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class Stores:
    settings: Settings
    postgres: PostgresServer
    redis: RedisServer


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """A small built project whose Feast registry, online store and warehouse are private servers."""
    base = tmp_path_factory.mktemp("store-outages")
    root = copy_project_config(base / "project")
    postgres, redis = PostgresServer(), RedisServer(base / "redis")
    mp = pytest.MonkeyPatch()
    try:
        postgres.start()
        postgres.create_database("outage_feast")
        redis.start()
        mp.setenv("GLUE_PROJECT_DIR", str(root))
        mp.setenv("GLUE_PROFILE", "prod")
        mp.setenv("GLUE_MLFLOW_TRACKING_URI", f"sqlite:///{root / '.glue' / 'mlflow.db'}")
        mp.delenv("GLUE_MLFLOW_REGISTRY_URI", raising=False)
        services = {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(postgres.port),
                    "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "", "SERVICES_DB_PREFIX": "outage_",
                    "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port), "REDIS_DB": "0"}
        for name, value in services.items():
            mp.setenv(f"GLUE_{name}", value)
        for name in [n for n in os.environ if n.startswith("FEAST_")]:
            mp.delenv(name)
        (root / ".glue").mkdir()
        yield Stores(build_small_champion_project(root), postgres, redis)
    finally:
        redis.stop()
        postgres.remove()
        get_settings.cache_clear()
        mp.undo()


def _glue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "glue"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})


def _assert_outage(proc: subprocess.CompletedProcess, service: str) -> None:
    """Exit 69 (EX_UNAVAILABLE) and a one-line error naming the service at its address."""
    assert proc.returncode == 69, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"error: {service} " in proc.stderr and "is unreachable" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


class Server(GlueServe):
    """`glue serve` of the project, and the answers it gave (request id -> score)."""

    def __init__(self, settings: Settings) -> None:
        self.answers: dict[str, float] = {}
        self.logged_before = set(_logged_ids())  # earlier servers' lines
        super().__init__(settings.state_dir / "serve.log")

    def ask(self, row: dict) -> httpx.Response:
        reply = self.http.post(f"/models/{FRAUD}/predict", json=row)
        if reply.status_code == 200:
            self.answers[reply.json()["request_id"]] = reply.json()["predictions"][0]["score"]
        return reply

    def scores(self, rows: list[dict]) -> list[float]:
        replies = [self.ask(r) for r in rows]
        assert [r.status_code for r in replies] == [200] * len(rows), [r.text[:300] for r in replies][:3]
        return [r.json()["predictions"][0]["score"] for r in replies]

    def stop(self) -> list[str]:  # type: ignore[override]
        """SIGTERM; the request ids this server wrote to the prediction log."""
        super().stop()
        return [i for i in _logged_ids() if i not in self.logged_before]


def _logged_ids() -> list[str]:
    folder = Path(os.environ["GLUE_PROJECT_DIR"]) / ".glue" / "predictions"
    return [json.loads(line)["request_id"] for file in folder.glob("*.jsonl")
            for line in file.read_text().splitlines()]


def _transactions(settings: Settings, n: int = 20) -> list[dict]:
    """Requests for customers and merchants of the last day (their features are online)."""
    events = features.read_events(settings)
    last = events[events["event_timestamp"] >= events["event_timestamp"].dt.floor("D").max()].head(n)
    return [{"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
             "merchant_id": int(r.merchant_id), "amount": float(r.amount), "channel": str(r.channel),
             "card_present": bool(r.card_present), "event_timestamp": r.event_timestamp.isoformat()}
            for r in last.itertuples()]


def _warehouse_rows(stores: Stores) -> pd.DataFrame:
    """The fraud model's batch-scores table on the private PostgreSQL, sorted."""
    import sqlalchemy

    from glue import batch_scoring

    engine = sqlalchemy.create_engine(stores.postgres.url("outage_feast"))
    try:
        table = pd.read_sql_table(batch_scoring.scores_table(FRAUD), engine)
    finally:
        engine.dispose()
    assert len(table)
    return table.sort_values(list(table.columns)).reset_index(drop=True)


def _champion() -> str:
    from glue.adapters import mlflow

    return mlflow.get_alias(FRAUD, contract.CHAMPION).version


def test_redis_down_while_serving_is_a_503_naming_it_and_the_server_recovers_by_itself(
        stores: Stores) -> None:
    rows, champion = _transactions(stores.settings), _champion()
    server = Server(stores.settings)
    try:
        before = server.scores(rows)
        stores.redis.stop()
        try:
            down = [server.ask(r) for r in rows]
        finally:
            stores.redis.start()
        deadline = time.monotonic() + 30
        while server.ask(rows[0]).status_code != 200:
            assert time.monotonic() < deadline, "never answered again:\n" + server.log.read_text()[-3000:]
            time.sleep(0.2)
        after = server.scores(rows)
    finally:
        logged = server.stop()

    assert {r.status_code for r in down} == {503}
    for reply in down:
        named = f"Redis at {stores.redis.address} (Feast's online store) is unreachable"
        assert named in reply.json()["message"]
        assert reply.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "Traceback" not in reply.text
    assert after == before  # the online rows came back with Redis
    assert sorted(logged) == sorted(server.answers)  # one log line per answer; none for a 503
    assert _champion() == champion


def test_redis_down_under_materialization_exits_69_naming_it_and_keeps_the_online_rows(
        stores: Stores) -> None:
    rows = _transactions(stores.settings)
    server = Server(stores.settings)
    try:
        before = server.scores(rows)
    finally:
        server.stop()
    stores.redis.stop()
    try:
        _assert_outage(_glue("features"), f"Redis at {stores.redis.address} (Feast's online store)")
    finally:
        stores.redis.start()
    server = Server(stores.settings)
    try:
        assert server.scores(rows) == before  # what was online before is online still
    finally:
        server.stop()
    again = _glue("features")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]


def test_postgres_down_serving_goes_on_and_commands_stop_naming_it_then_complete(stores: Stores) -> None:
    rows, champion = _transactions(stores.settings), _champion()
    address = f"PostgreSQL at 127.0.0.1:{stores.postgres.port}"
    done = _glue("score-batch", "--model", FRAUD)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    scored = _warehouse_rows(stores)

    server = Server(stores.settings)
    try:
        before = server.scores(rows)
        stores.postgres.stop()
        try:
            time.sleep(1.0)  # registry refreshes fail meanwhile
            during = server.scores(rows)  # Feast's cached registry and Redis: still answering
            _assert_outage(_glue("features"), address)
            _assert_outage(_glue("score-batch", "--model", FRAUD), address)
        finally:
            stores.postgres.start()
        after = server.scores(rows)
    finally:
        logged = server.stop()
    assert during == before == after
    assert sorted(logged) == sorted(server.answers)

    assert _warehouse_rows(stores).equals(scored)  # the failed scoring left the table as it was
    for args in (["features"], ["score-batch", "--model", FRAUD]):
        proc = _glue(*args)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert _champion() == champion

"""A service that is down is named with its address, for every client glue talks through."""

from __future__ import annotations

import socket

import pytest

from glue.errors import ServiceUnavailable, service_outage


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_service_is_named_with_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    import redis
    from mlflow import MlflowClient

    port = _closed_port()
    with pytest.raises(redis.exceptions.ConnectionError) as down:
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2).ping()
    outage = service_outage(down.value)
    assert isinstance(outage, ServiceUnavailable) and outage.exit_code == 69
    assert str(outage).startswith(f"Redis at 127.0.0.1:{port} (Feast's online store) is unreachable")

    with pytest.raises(psycopg.OperationalError) as down:
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2")
    assert str(service_outage(down.value)).startswith(f"PostgreSQL at 127.0.0.1:{port} is unreachable")

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(Exception) as down:  # noqa: B017 - MLflow's own wrapping of the refusal
        MlflowClient(f"http://127.0.0.1:{port}").search_experiments()
    assert str(service_outage(down.value)).startswith(
        f"the MLflow tracking server http://127.0.0.1:{port} is unreachable")
    assert "run it again once the service is back" in str(service_outage(down.value))


def test_anything_else_is_not_an_outage() -> None:
    assert service_outage(ValueError("bad value")) is None
    assert service_outage(KeyError("amount")) is None

"""`glue serve` and `glue score-batch` against the real tools: Feast online/offline, MLflow champions.

One small project per module (15 demo days x 200 transactions, validated, features materialized,
both demo models trained and promoted; ~60 s), then the FastAPI app through TestClient, and once
the real `glue serve` under uvicorn for the hot reload under load. The demo serves two models on
one Feast repo: fraud-detector (binary; join keys customer_id, merchant_id and the transaction's
request fields) and customer-spend (regression; customer_id only).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest

from glue import batch_scoring, contract, features, prediction_log, serving
from glue.adapters import mlflow
from glue.errors import GlueError
from glue.settings import Settings, get_settings
from tests.private_services import GlueServe, free_port

pytestmark = pytest.mark.slow

FRAUD = "fraud-detector"
SPEND = "customer-spend"
FRAUD_ROUTE = f"/models/{FRAUD}/predict"
SPEND_ROUTE = f"/models/{SPEND}/predict"
NOW = "2026-01-16T09:30:00Z"  # the morning after the last batch: the online store's latest snapshot


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A project with a materialized online store and both models promoted (version 1 each).

    Module-scoped (the function-scoped `tmp_project` fixture would rebuild it for every test);
    it copies the same files as tests/conftest.py does.
    """
    from tests.conftest import build_small_champion_project, copy_project_config

    root = copy_project_config(tmp_path_factory.mktemp("serving") / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    mp.delenv("GLUE_PROFILE", raising=False)
    for name in (serving.ENV_MODE, serving.ENV_CHALLENGER_WEIGHT):
        mp.delenv(name, raising=False)
    mp.setenv(serving.ENV_POLL_SECONDS, "0.2")
    settings = build_small_champion_project(root)
    yield settings
    get_settings.cache_clear()
    mp.undo()


@pytest.fixture(scope="module")
def known(project: Settings) -> pd.DataFrame:
    """Events of the last day: their customers and merchants are in the online store."""
    tx = features.read_events(project)
    last = tx["event_timestamp"].dt.floor("D").max()
    return tx[tx["event_timestamp"] >= last].drop_duplicates("customer_id").reset_index(drop=True)


def _route_200(route: str) -> str:
    return f'glue_serve_requests_total{{route="{route}",status="200"}}'


def _sample(metrics: str, name: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _txn(row: Any, **changes: Any) -> dict[str, Any]:
    """A fraud-detector request row from an event (fields set to ... are left out)."""
    body = {"transaction_id": str(row.transaction_id), "customer_id": int(row.customer_id),
            "merchant_id": int(row.merchant_id), "amount": float(row.amount), "channel": str(row.channel),
            "card_present": bool(row.card_present), "event_timestamp": NOW}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def _client(settings: Settings, **params: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(serving.create_app(settings, serving.ServingParams(poll_seconds=0.2, **params)))


def _wait_ready(client: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/ready")
        if answer.status_code == 200:
            return answer.json()
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.1)


def _log_lines(settings: Settings, request_ids: set[str], want: int, timeout: float = 10.0) -> list[dict]:
    """Prediction log lines of these requests, once `want` of them are written (the writer is async)."""
    folder = prediction_log.log_folder(settings)
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]
        mine = [r for r in map(_parsed, lines) if r and r["request_id"] in request_ids]
        if len(mine) >= want or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def _parsed(line: str) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:  # the line being written right now
        return None


def _wait_challenger(client: Any, version: str, model: str = FRAUD, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (ready := client.get("/ready").json())["models"][model].get("challenger_version") != version:
        assert time.monotonic() < deadline, ready
        time.sleep(0.1)
    return ready


def _copy_of_champion(settings: Settings, model: str = FRAUD, tags: dict[str, str] | None = None) -> str:
    """A new registered version of a model's champion (a retrain without the wait)."""
    ref = mlflow.get_alias(model, contract.CHAMPION)
    assert ref is not None
    return mlflow.register_model(ref.source, model, {**ref.tags, **(tags or {})})


# --- the answers ---------------------------------------------------------------------------------------


def test_predicts_both_models_one_row_and_a_batch(project: Settings, known: pd.DataFrame) -> None:
    with _client(project) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = _wait_ready(client)
        assert set(ready["models"]) == {FRAUD, SPEND}
        fraud, spend = ready["models"][FRAUD], ready["models"][SPEND]
        assert fraud["ready"] and spend["ready"] and fraud["task"] == "binary_classification"
        assert fraud["request"] == {"customer_id": "Int64", "merchant_id": "Int64", "amount": "Float64",
                                    "channel": "String", "card_present": "Bool",
                                    "event_timestamp": "UnixTimestamp", "transaction_id": "optional"}
        assert spend["request"] == {"customer_id": "Int64", "transaction_id": "optional"}
        version = fraud["version"]

        one = _txn(known.iloc[0])
        answer = client.post(FRAUD_ROUTE, json={"instances": [one]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        (p,) = body["predictions"]
        assert 0.0 <= p["score"] <= 1.0 and p["transaction_id"] == one["transaction_id"]
        threshold = project.model(FRAUD).decision_threshold
        assert body["threshold"] == threshold
        assert p["decision"] == ("flag" if p["score"] >= threshold else "approve")
        assert p["arm"] == "champion" and p["model_version"] == version
        assert body["model"] == {"name": FRAUD, "version": version, "alias": "champion"}
        assert answer.headers["x-request-id"] == body["request_id"]
        fresh = body["feature_freshness"]
        assert set(fresh) == {"customer_transactions", "merchant_risk"}
        assert fresh["customer_transactions"]["event_timestamp"] == "2026-01-16T00:00:00+00:00"
        assert fresh["customer_transactions"]["age_seconds"] > 0

        single = client.post(FRAUD_ROUTE, json=one).json()  # one object without the list
        assert single["predictions"][0]["score"] == pytest.approx(p["score"])
        invocations = client.post(f"/models/{FRAUD}/invocations", json=one).json()
        assert invocations["predictions"][0]["score"] == pytest.approx(p["score"])
        no_id = client.post(FRAUD_ROUTE, json=_txn(known.iloc[0], transaction_id=...)).json()
        assert "transaction_id" not in no_id["predictions"][0]

        rows = [_txn(r) for r in known.head(50).itertuples()]
        batch = client.post(FRAUD_ROUTE, json={"instances": rows})
        assert batch.status_code == 200, batch.text
        scored = batch.json()["predictions"]
        assert [s["transaction_id"] for s in scored] == [r["transaction_id"] for r in rows]
        assert all(0.0 <= s["score"] <= 1.0 and s["model_version"] == version for s in scored)

        # the regression: its own route, its own (smaller) request, a prediction per row
        customers = [{"customer_id": int(c)} for c in known["customer_id"].head(20)]
        spent = client.post(SPEND_ROUTE, json={"instances": customers})
        assert spent.status_code == 200, spent.text
        spent_body = spent.json()
        assert spent_body["model"] == {"name": SPEND, "version": spend["version"], "alias": "champion"}
        assert "threshold" not in spent_body
        assert set(spent_body["feature_freshness"]) == {"customer_transactions"}
        values = spent_body["predictions"]
        assert len(values) == 20 and all(set(v) == {"prediction", "arm", "model_version"} for v in values)
        assert all(isinstance(v["prediction"], float) and v["prediction"] == v["prediction"] for v in values)
        with_id = client.post(SPEND_ROUTE, json={"customer_id": int(known.iloc[0].customer_id),
                                                 "transaction_id": "t-1"}).json()
        assert with_id["predictions"][0]["transaction_id"] == "t-1"

        # with several models, /predict names the routes instead of guessing
        unrouted = client.post("/predict", json=one)
        assert unrouted.status_code == 404 and FRAUD_ROUTE in unrouted.json()["message"]
        assert SPEND_ROUTE in unrouted.json()["message"]
        nobody = client.post("/models/nobody/predict", json=one)
        assert nobody.status_code == 404 and "no model 'nobody'" in nobody.json()["message"]

        # the log has each prediction with its request and features, equal to the reference path
        logged = _log_lines(project, {batch.json()["request_id"]}, want=50)
        assert len(logged) == 50 and {r["arm"] for r in logged} == {"champion"}
        first = logged[0]
        assert first["model_name"] == FRAUD and first["model_version"] == version
        assert first["request"] == {**rows[0], "event_timestamp": "2026-01-16T09:30:00+00:00"}
        assert first["decision"] in ("flag", "approve") and "prediction" not in first
        at = dt.datetime(2026, 1, 16, 9, 30, tzinfo=dt.UTC)
        entity_rows = [{k: v for k, v in r.items() if k != "transaction_id"} | {"event_timestamp": at}
                       for r in rows[:10]]
        reference = features.online_features(project, project.model(FRAUD), entity_rows)
        for record, (_, expected) in zip(logged[:10], reference.iterrows(), strict=True):
            for column, value in record["features"].items():
                assert value == pytest.approx(expected[column], nan_ok=True), column
        spend_logged = _log_lines(project, {spent_body["request_id"]}, want=20)
        assert {r["model_name"] for r in spend_logged} == {SPEND}
        assert all("prediction" in r and "score" not in r for r in spend_logged)

        metrics = client.get("/metrics").text
    assert _sample(metrics, _route_200(FRAUD_ROUTE)) == 4.0  # and one on /models/<name>/invocations
    assert _sample(metrics, _route_200(SPEND_ROUTE)) == 2.0
    assert f'glue_serve_request_latency_seconds_bucket{{le="0.005",route="{FRAUD_ROUTE}"}}' in metrics
    assert f'glue_serve_model_version{{alias="champion",model="{FRAUD}"}} {float(version)}' in metrics
    assert f'glue_serve_predictions_total{{arm="champion",model="{FRAUD}"}} 54.0' in metrics
    assert f'glue_serve_predictions_total{{arm="champion",model="{SPEND}"}} 21.0' in metrics
    assert f'glue_serve_ready{{model="{SPEND}"}} 1.0' in metrics


def test_one_model_project_answers_on_predict_too(project: Settings, known: pd.DataFrame) -> None:
    params = project.params.model_copy(update={"models": {FRAUD: project.model(FRAUD)}})
    alone = project.model_copy(update={"params": params})
    with _client(alone) as client:
        ready = _wait_ready(client)
        assert set(ready["models"]) == {FRAUD}
        one = _txn(known.iloc[0])
        plain = client.post("/predict", json=one)
        assert plain.status_code == 200, plain.text
        routed = client.post(FRAUD_ROUTE, json=one).json()
        assert plain.json()["predictions"][0]["score"] == pytest.approx(routed["predictions"][0]["score"])
        assert client.post("/invocations", json={"instances": [one]}).status_code == 200
        assert serving.routes_of(alone) == [FRAUD_ROUTE, "/predict"]


def test_bad_input_gets_a_4xx_naming_the_field(project: Settings, known: pd.DataFrame) -> None:
    good = _txn(known.iloc[0])
    cases: list[tuple[str, Any, int, str]] = [
        (FRAUD_ROUTE, {"instances": [_txn(known.iloc[0], customer_id=...)]}, 422, "instances[0].customer_id"),
        (FRAUD_ROUTE, {"instances": [good, {**good, "colour": "red"}]}, 422, "instances[1].colour"),
        # strict types: no string for a number, no boolean for an integer, no number for a boolean
        (FRAUD_ROUTE, {"instances": [good, good, good, {**good, "customer_id": "123"}]}, 422,
         "instances[3].customer_id"),
        (FRAUD_ROUTE, {"instances": [{**good, "merchant_id": True}]}, 422, "instances[0].merchant_id"),
        (FRAUD_ROUTE, {"instances": [{**good, "card_present": 1}]}, 422, "instances[0].card_present"),
        (FRAUD_ROUTE, {"instances": [{**good, "amount": "12.5"}]}, 422, "instances[0].amount"),
        (FRAUD_ROUTE, {"instances": [{**good, "amount": -5}]}, 422, "instances[0].amount"),
        (FRAUD_ROUTE, {"instances": [{**good, "channel": "carrier_pigeon"}]}, 422, "instances[0].channel"),
        (FRAUD_ROUTE, {"instances": [{**good, "event_timestamp": 1768555800}]}, 422,
         "instances[0].event_timestamp"),
        (FRAUD_ROUTE, {"instances": [_txn(known.iloc[0], event_timestamp=...)]}, 422,
         "instances[0].event_timestamp"),
        (FRAUD_ROUTE, {**good, "colour": "red"}, 422, "colour"),
        (FRAUD_ROUTE, {"instances": []}, 422, "instances"),
        (FRAUD_ROUTE, {"instances": [good], "dry_run": True}, 422, "dry_run"),
        (FRAUD_ROUTE, {"instances": [good] * 1001}, 413, "instances"),
        (FRAUD_ROUTE, {"instances": [{**good, "customer_id": 987654}]}, 422, "instances[0].customer_id"),
        (FRAUD_ROUTE, {"instances": [good, {**good, "merchant_id": 987655}]}, 422,
         "instances[1].merchant_id"),
        (SPEND_ROUTE, {"instances": [{"customer_id": "7"}]}, 422, "instances[0].customer_id"),
        (SPEND_ROUTE, {"customer_id": 7, "amount": 5.0}, 422, "amount"),  # not a field of this model
        (SPEND_ROUTE, {"customer_id": 987654}, 422, "customer_id"),
    ]
    with _client(project) as client:
        _wait_ready(client)
        for route, payload, status, field in cases:
            answer = client.post(route, json=payload)
            assert answer.status_code == status, (field, answer.text)
            assert answer.json()["field"] == field, answer.json()
            assert field.split(".")[-1].split("[")[0] in answer.json()["message"]
        unknown = client.post(FRAUD_ROUTE, json={"instances": [{**good, "customer_id": 987654}]}).json()
        assert "unknown customer_id 987654" in unknown["message"]
        assert unknown["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        strict = client.post(FRAUD_ROUTE, json={"instances": [{**good, "customer_id": "123"}]}).json()
        assert strict["message"].startswith("instances[0].customer_id: Input should be a valid integer")

        json_type = {"content-type": "application/json"}
        nan = json.dumps({"instances": [{**good, "amount": float("nan")}]}).encode()  # NaN: not JSON proper
        answer = client.post(FRAUD_ROUTE, content=nan, headers=json_type)
        assert answer.status_code == 422 and answer.json()["field"] == "instances[0].amount", answer.text
        inf = json.dumps({**good, "amount": float("inf")}).encode()
        assert client.post(FRAUD_ROUTE, content=inf, headers=json_type).json()["field"] == "amount"
        huge = b'{"instances": [' + b" " * (1 << 20) + b"]}"
        answer = client.post(FRAUD_ROUTE, content=huge, headers=json_type)
        assert answer.status_code == 413 and answer.json()["field"] == "body"
        answer = client.post(FRAUD_ROUTE, content=b'{"instances": [', headers=json_type)
        assert answer.status_code == 400 and "not JSON" in answer.json()["message"]
        metrics = client.get("/metrics").text
    assert f'glue_serve_errors_total{{code="INVALID_PARAMETER_VALUE",model="{FRAUD}"}}' in metrics
    assert f'glue_serve_requests_total{{route="{FRAUD_ROUTE}",status="413"}} 2.0' in metrics


def test_chunked_body_without_length_is_capped(project: Settings, known: pd.DataFrame) -> None:
    """`serving.max_body_bytes` holds for a chunked body (no Content-Length): 413 once the limit passes.

    Over real HTTP (uvicorn with httptools, as `glue serve` runs it, here in a thread): TestClient
    reads a body whole before the app sees it, which would hide whether the app stops reading. A
    body that never ends is answered 413 while the client is still sending it.
    """
    import httpx

    limit = 4096
    app = serving.create_app(project, serving.ServingParams(poll_seconds=0.2, max_body_bytes=limit))
    json_type = {"content-type": "application/json"}
    good = json.dumps({"instances": [_txn(known.iloc[0])]}).encode()

    def pieces(data: bytes, size: int) -> Iterator[bytes]:
        yield from (data[i:i + size] for i in range(0, len(data), size))

    with _uvicorn(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        _wait_http_ready(url)
        small = http.post(FRAUD_ROUTE, content=pieces(good, 50), headers=json_type)  # chunked, in limit
        assert small.status_code == 200, small.text
        assert small.request.headers["transfer-encoding"] == "chunked"

        spaces = (b" " * 4096 for _ in range(1024))  # 4 MiB, a thousand times the limit
        big = http.post(FRAUD_ROUTE, content=spaces, headers=json_type)
        assert "content-length" not in big.request.headers
        assert big.status_code == 413, big.text
        assert big.json()["field"] == "body" and f"over {limit} bytes" in big.json()["message"]
        assert http.get("/health").status_code == 200  # the same keep-alive connection goes on

        # a chunked body that never ends: the answer comes while the client is still sending
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(f"POST {FRAUD_ROUTE} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
                        "transfer-encoding: chunked\r\n\r\n".encode())
            raw.settimeout(0.05)
            answer, chunks, deadline = b"", 0, time.monotonic() + 20
            while b'"field":"body"' not in answer:
                assert time.monotonic() < deadline, answer
                raw.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")  # 1 KiB chunks, never the last one
                chunks += 1
                try:
                    answer += raw.recv(65536)
                except TimeoutError:
                    pass
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"RESOURCE_LIMIT_EXCEEDED" in answer and chunks > limit // 1024


def test_unknown_entities_can_be_scored_when_configured(project: Settings, known: pd.DataFrame) -> None:
    with _client(project, unknown_entities="score") as client:
        _wait_ready(client)
        answer = client.post(FRAUD_ROUTE, json=_txn(known.iloc[0], customer_id=987654))
        assert answer.status_code == 200, answer.text
        assert 0.0 <= answer.json()["predictions"][0]["score"] <= 1.0


def test_not_ready_without_a_champion(project: Settings, known: pd.DataFrame) -> None:
    missing = project.model(SPEND).model_copy(update={"name": "no-such-model"})
    models = {FRAUD: project.model(FRAUD), missing.name: missing}
    params = project.params.model_copy(update={"models": models})
    other = project.model_copy(update={"params": params})
    with _client(other) as client:
        deadline = time.monotonic() + 30
        while "no alias" not in (reason := client.get("/ready").json().get("reason", "")):
            assert time.monotonic() < deadline, reason
            time.sleep(0.1)
        ready = client.get("/ready")
        assert ready.status_code == 503  # ready only when every model is
        assert ready.json()["models"][FRAUD]["ready"] and not ready.json()["models"]["no-such-model"]["ready"]
        assert client.get("/health").status_code == 200
        assert client.post(FRAUD_ROUTE, json=_txn(known.iloc[0])).status_code == 200  # the others answer
        route = "/models/no-such-model/predict"
        answer = client.post(route, json={"instances": [{"customer_id": "1"}]})
        assert answer.status_code == 422  # the input is checked first
        answer = client.post(route, json={"customer_id": 1})
        assert answer.status_code == 503 and "no model loaded" in answer.json()["message"]


# --- the loop around it -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_fraud_version(project: Settings) -> str:
    """A second fraud-detector version that scores the same rows differently: a logistic regression
    trained by `glue train`'s own function on the same features (the champion is boosted trees).

    Why: a hot reload between two identical models proves nothing about which one answered.
    Training gives it the challenger alias; the tests that use a challenger set their own.
    """
    from glue import training
    from tests.conftest import one_openmp_thread

    spec = project.model(FRAUD)
    linear = spec.model_copy(update={"estimator": spec.estimator.model_copy(
        update={"type": "logistic_regression", "params": {"C": 0.05}})})
    with one_openmp_thread():
        return training.train(project, linear).version


@pytest.mark.timeout(240)
def test_hot_reload_under_load_with_the_real_server(project: Settings, known: pd.DataFrame,
                                                     other_fraud_version: str) -> None:
    """`glue serve` keeps answering while champion moves to a different model, and survives a bad one.

    Every client thread records every failure (an exception or a non-200) in one shared list, so a
    thread that dies cannot hide one; every answer's score is checked against the scikit-learn
    model of the version named in the answer, on the features the prediction log says it got.
    """
    import httpx

    stop = threading.Event()
    seen: list[list[dict[str, Any]]] = [[] for _ in range(4)]  # per thread: each answer, in order
    spend_ids: list[str] = []
    failures: list[str] = []  # every exception or non-200 of every client thread
    before = mlflow.get_alias(FRAUD, contract.CHAMPION)
    assert before is not None
    new = other_fraud_version
    server = GlueServe(project.state_dir / "serve.log", env={"GLUE_PROJECT_DIR": str(project.project_dir)})
    url = server.url
    try:
        def post(http: httpx.Client, route: str, row: dict[str, Any]) -> dict[str, Any] | None:
            try:
                answer = http.post(route, json=row)
                if answer.status_code != 200:
                    failures.append(f"{route} HTTP {answer.status_code}: {answer.text[:300]}")
                    return None
                return answer.json()
            except Exception as exc:  # recorded, never lost with the thread
                failures.append(f"{route} {type(exc).__name__}: {exc}")
                return None

        def hammer(out: list[dict[str, Any]], offset: int) -> None:
            try:
                with httpx.Client(base_url=url, timeout=10) as http:
                    i = offset
                    while not stop.is_set():
                        row = _txn(known.iloc[i % len(known)])
                        if (body := post(http, FRAUD_ROUTE, row)) is not None:
                            (p,) = body["predictions"]
                            out.append({"request_id": body["request_id"], "version": p["model_version"],
                                        "score": p["score"], "transaction_id": p["transaction_id"]})
                        if offset == 0:  # the other model keeps answering meanwhile
                            spend = {"customer_id": row["customer_id"]}
                            if (body := post(http, SPEND_ROUTE, spend)) is not None:
                                spend_ids.append(body["request_id"])
                        i += 1
            except BaseException as exc:
                failures.append(f"client thread {offset} died: {type(exc).__name__}: {exc}")
                raise

        threads = [threading.Thread(target=hammer, args=(seen[k], k * 7)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        mlflow.set_alias(FRAUD, contract.CHAMPION, new)
        deadline = time.monotonic() + 30
        while not any(a["version"] == new for part in seen for a in part[-5:]):
            assert time.monotonic() < deadline, "the server never switched to the new champion"
            time.sleep(0.05)
        time.sleep(0.5)

        # a version that cannot be served (its columns are not in the feature service): kept out
        broken = _copy_of_champion(project, tags={contract.FEATURE_COLUMNS: "customer_transactions__no_such"})
        mlflow.set_alias(FRAUD, contract.CHAMPION, broken)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a client thread hangs"
        metrics = httpx.get(f"{url}/metrics").text
        ready = httpx.get(f"{url}/ready").json()
    finally:
        stop.set()
        mlflow.set_alias(FRAUD, contract.CHAMPION, before.version)
        server.stop()  # SIGTERM: the server writes its prediction log to the end
    output = server.log.read_text()

    assert failures == [], f"{len(failures)} requests failed during the switch: {failures[:5]}"
    answers = [a for part in seen for a in part]
    assert len(answers) > 50
    assert spend_ids
    for part in seen:  # each client moves from the old version to the new one, never back
        versions = [a["version"] for a in part]
        assert set(versions) == {before.version, new}
        assert versions[0] == before.version and versions[-1] == new
        assert versions.index(new) == len(versions) - versions[::-1].index(before.version)
    assert ready["models"][FRAUD]["version"] == new  # the broken version was not taken
    assert f'glue_serve_model_reloads_total{{alias="champion",model="{FRAUD}",result="failed"}}' in metrics
    assert f"could not load {FRAUD} version {broken}" in output

    # the log, written to the end when the server stopped: one line per answer, nothing more
    fraud_ids = {a["request_id"] for a in answers}
    logged = _log_lines(project, fraud_ids | set(spend_ids), want=len(answers) + len(spend_ids), timeout=0)
    by_id = {r["request_id"]: r for r in logged if r["model_name"] == FRAUD}
    assert len(logged) == len(answers) + len(spend_ids) and set(by_id) == fraud_ids
    assert sorted(r["request_id"] for r in logged if r["model_name"] == SPEND) == sorted(spend_ids)

    # every score is its version's own prediction on the features it got; the two versions differ
    reference = {v: _sklearn_scores(v, [by_id[a["request_id"]] for a in answers])
                 for v in (before.version, new)}
    for k, a in enumerate(answers):
        line = by_id[a["request_id"]]
        assert line["model_version"] == a["version"]
        assert line["request"]["transaction_id"] == a["transaction_id"]
        assert line["score"] == a["score"]
        assert a["score"] == pytest.approx(reference[a["version"]][k], rel=0, abs=1e-9), a
    gap = np.abs(reference[before.version] - reference[new])
    assert np.median(gap) > 1e-3, "the two versions score alike: the switch would prove nothing"


def _sklearn_scores(version: str, lines: list[dict[str, Any]]) -> np.ndarray:
    """P(positive) of one fraud-detector version's scikit-learn model on logged feature rows."""
    ref = mlflow.get_version(FRAUD, version)
    columns = contract.feature_columns(ref.tags)
    x = pd.DataFrame([[np.nan if (v := line["features"][c]) is None else v for c in columns]
                      for line in lines], columns=columns, dtype=float)
    return mlflow.load_sklearn_model(ref.uri).predict_proba(x)[:, 1]


def test_shadow_mode_logs_the_challenger_and_answers_with_the_champion(
        project: Settings, known: pd.DataFrame) -> None:
    champion = mlflow.get_alias(FRAUD, contract.CHAMPION)
    assert champion is not None
    challenger = _copy_of_champion(project)
    mlflow.set_alias(FRAUD, contract.CHALLENGER, challenger)
    with _client(project, mode="shadow") as client:
        _wait_ready(client)
        _wait_challenger(client, challenger)
        rows = [_txn(r) for r in known.head(5).itertuples()]
        body = client.post(FRAUD_ROUTE, json={"instances": rows}).json()
        assert {p["model_version"] for p in body["predictions"]} == {champion.version}
        assert {p["arm"] for p in body["predictions"]} == {"champion"}
        logged = _log_lines(project, {body["request_id"]}, want=10)
    arms = {(r["arm"], r["model_version"]) for r in logged}
    assert arms == {("champion", champion.version), ("shadow", challenger)}
    shadow = [r for r in logged if r["arm"] == "shadow"]
    assert [r["request"]["transaction_id"] for r in shadow] == [r["transaction_id"] for r in rows]


def test_ab_split_is_deterministic_per_entity(project: Settings, known: pd.DataFrame) -> None:
    challenger = _copy_of_champion(project)
    mlflow.set_alias(FRAUD, contract.CHALLENGER, challenger)
    spend_challenger = _copy_of_champion(project, SPEND)
    mlflow.set_alias(SPEND, contract.CHALLENGER, spend_challenger)
    rows = [_txn(r) for r in known.head(60).itertuples()]
    with _client(project, mode="ab", challenger_weight=0.5) as client:
        _wait_ready(client)
        ready = _wait_challenger(client, challenger)
        _wait_challenger(client, spend_challenger, SPEND)
        first = client.post(FRAUD_ROUTE, json={"instances": rows}).json()["predictions"]
        again = [client.post(FRAUD_ROUTE, json=r).json()["predictions"][0] for r in rows[:20]]
        customers = [{"customer_id": r["customer_id"]} for r in rows]
        spend = client.post(SPEND_ROUTE, json={"instances": customers}).json()["predictions"]
    arms = [p["arm"] for p in first]
    assert set(arms) == {"champion", "challenger"}
    assert arms[:20] == [p["arm"] for p in again]  # same entity, same arm, batch or not
    for row, p in zip(rows, first, strict=True):  # the fraud model's entity: both of its join keys
        assert p["arm"] == serving.ab_arm((row["customer_id"], row["merchant_id"]), 0.5)
        assert p["model_version"] == (challenger if p["arm"] == "challenger"
                                      else ready["models"][FRAUD]["version"])
    for row, p in zip(customers, spend, strict=True):  # the spend model's: the customer alone
        assert p["arm"] == serving.ab_arm((row["customer_id"],), 0.5)
        assert p["model_version"] == (spend_challenger if p["arm"] == "challenger"
                                      else ready["models"][SPEND]["version"])
    assert {p["arm"] for p in spend} == {"champion", "challenger"}


def test_store_outage_answers_503_and_recovers(project: Settings, known: pd.DataFrame) -> None:
    online = project.project_dir / ".glue" / "feast" / "online_store.db"
    assert online.is_file()
    original = online.read_bytes()
    request = {"instances": [_txn(known.iloc[0])]}
    spend_request = {"customer_id": int(known.iloc[0].customer_id)}
    with _client(project) as client:
        _wait_ready(client)
        assert client.post(FRAUD_ROUTE, json=request).status_code == 200
        assert client.post(SPEND_ROUTE, json=spend_request).status_code == 200
        try:
            with open(online, "r+b") as fh:  # the same file, unreadable: a broken disk or copy
                fh.write(b"not a database " * (len(original) // 15))
            down = client.post(FRAUD_ROUTE, json=request)
            assert down.status_code == 503, down.text
            assert "feature store" in down.json()["message"]
            assert client.post(SPEND_ROUTE, json=spend_request).status_code == 503
            ready = client.get("/ready")
            assert ready.status_code == 503 and "feature store" in ready.json()["reason"]
            assert client.get("/health").status_code == 200
        finally:
            with open(online, "r+b") as fh:
                fh.write(original)
        deadline = time.monotonic() + 20
        while (answer := client.post(FRAUD_ROUTE, json=request)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert client.post(SPEND_ROUTE, json=spend_request).status_code == 200
        _wait_ready(client, timeout=20)
        metrics = client.get("/metrics").text
    assert f'glue_serve_errors_total{{code="TEMPORARILY_UNAVAILABLE",model="{FRAUD}"}}' in metrics


# --- batch scoring -------------------------------------------------------------------------------------


def test_score_batch_one_day_and_all_for_both_models(project: Settings) -> None:
    tx = features.read_events(project)
    day = dt.date(2026, 1, 15)
    on_day = tx[tx["event_timestamp"].dt.date == day]
    fraud = project.model(FRAUD)
    champion = mlflow.get_alias(FRAUD, contract.CHAMPION)
    assert champion is not None

    result = batch_scoring.score_batch(project, fraud, day)
    assert result.path == project.data_dir / "scores" / FRAUD / "2026-01-15.parquet"
    scores = pd.read_parquet(result.path)
    assert {"transaction_id", "event_timestamp", "customer_id", "merchant_id", "score", "decision",
            "model_name", "model_version"} <= set(scores.columns)
    assert len(scores) == len(on_day) == result.rows
    assert set(scores["transaction_id"]) == set(on_day["transaction_id"])
    assert scores["score"].between(0, 1).all()
    assert set(scores["model_version"]) == {champion.version}
    threshold = fraud.decision_threshold
    assert ((scores["score"] >= threshold) == (scores["decision"] == "flag")).all()
    assert "2026-01-15" in result.summary()
    assert not list(result.path.parent.glob("*.tmp"))

    everything = batch_scoring.score_batch(project, fraud, None)
    assert everything.path.name == "all.parquet" and everything.rows == len(tx)
    # in chunks of a few batch files (memory stays flat at millions of rows): the same answers
    whole = pd.read_parquet(everything.path)
    chunked = batch_scoring.score_batch(project, fraud, None, chunk_rows=len(tx) // 5)
    assert chunked.rows == everything.rows and chunked.flagged == everything.flagged
    pd.testing.assert_frame_equal(
        pd.read_parquet(chunked.path).sort_values("transaction_id", ignore_index=True),
        whole.sort_values("transaction_id", ignore_index=True))
    with pytest.raises(GlueError, match="no validated events on 2027-01-01"):
        batch_scoring.score_batch(project, fraud, dt.date(2027, 1, 1))
    assert not (everything.path.parent / "2027-01-01.parquet").exists()
    assert not list(everything.path.parent.glob(".*.tmp"))

    # the regression scores each customer seen that day, as of the day's end
    spend = batch_scoring.score_batch(project, project.model(SPEND), day)
    assert spend.path == project.data_dir / "scores" / SPEND / "2026-01-15.parquet"
    predicted = pd.read_parquet(spend.path)
    assert "prediction" in predicted.columns and "score" not in predicted.columns
    assert set(predicted["customer_id"]) == set(on_day["customer_id"]) and len(predicted) == spend.rows
    assert predicted["prediction"].notna().all() and set(predicted["model_name"]) == {SPEND}
    spend_chunked = batch_scoring.score_batch(project, project.model(SPEND), day, chunk_rows=50)
    pd.testing.assert_frame_equal(pd.read_parquet(spend_chunked.path), predicted)


# --- helpers -------------------------------------------------------------------------------------------


def _wait_http_ready(url: str, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("glue serve did not become ready")


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """Serve `app` over real HTTP with uvicorn (as `glue serve` does) on a thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

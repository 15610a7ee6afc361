"""Hostile input against every route of `glue serve`: property-based requests, never a 5xx, never a trace.

Why: the hand-written cases of test_serving.py cover what someone thought of; hypothesis covers
what nobody did. The app publishes no OpenAPI for its prediction routes (their request is derived at
run time from each model's Feast feature service), so the bodies are generated from the JSON schema
of each model's own request model (``RequestSchema.model``, what the route validates against) and
the routes from ``app.openapi()`` (the service routes) plus every model's prediction routes:
valid-looking rows with strange values (huge, negative, NaN and infinity, numbers as strings,
unicode, nested objects, wrong types), missing and unknown fields, empty and oversized batches,
bodies that are not JSON or not UTF-8, nested past the parser's limit, wrong content types and
methods. Every answer must be below 500, carry no Python traceback, be strict JSON when it is an
error or a prediction, and a 4xx must be an MLflow-style error body with ``error_code``.

In-process through TestClient (real FastAPI, Feast online store and MLflow champions; no HTTP
socket, for speed): ~1,500 examples in well under two minutes once the project is built. The
examples are derandomized (the same on every run) and not stored (``database=None``); each test
prints how many it tried per route and the statuses it got.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glue import features, serving
from glue.settings import Settings, get_settings

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONTENT_TYPES = (None, "application/json", "application/json; charset=utf-8", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "*/*")
# the client's own request id (echoed in the answer and the log): any printable ASCII (TestClient
# itself cannot carry the latin-1 rest of what HTTP allows back in a response header)
REQUEST_IDS = st.one_of(st.none(), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                                           max_size=300))
TRACE = re.compile(r'Traceback \(most recent call last\)|File "[^"]*", line \d+')


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A project with a materialized online store and both demo models promoted (as test_serving.py)."""
    from tests.conftest import build_small_champion_project, copy_project_config

    root = copy_project_config(tmp_path_factory.mktemp("serving-fuzz") / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    mp.delenv("GLUE_PROFILE", raising=False)
    for name in (serving.ENV_MODE, serving.ENV_CHALLENGER_WEIGHT, serving.ENV_POLL_SECONDS):
        mp.delenv(name, raising=False)
    yield build_small_champion_project(root)
    get_settings.cache_clear()
    mp.undo()


@pytest.fixture(scope="module")
def client(project: Settings) -> Iterator[Any]:
    """The app of every model, ready (champions loaded, store open), through TestClient."""
    from fastapi.testclient import TestClient

    app = serving.create_app(project, serving.ServingParams(poll_seconds=0.5))
    with TestClient(app, raise_server_exceptions=False) as http:
        deadline = time.monotonic() + 60
        while (ready := http.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.1)
        yield http


@pytest.fixture(scope="module")
def samples(project: Settings) -> dict[str, list[Any]]:
    """Real values per request field (entities the online store knows), from the project's events."""
    tx = features.read_events(project)
    tx = tx[tx["event_timestamp"] >= tx["event_timestamp"].dt.floor("D").max()].head(200)
    return {c: [_plain(v) for v in tx[c].drop_duplicates().tolist()] for c in tx.columns}


# --- the properties --------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_every_prediction_route_survives_hostile_bodies(client: Any, samples: dict[str, list[Any]],
                                                       record_property: Any) -> None:
    """Each model's routes, bodies built from its request schema: answers < 500, errors name a code."""
    service = client.app.state.service
    tried: Counter[str] = Counter()
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for name, endpoint in service.endpoints.items():
        schema = endpoint.model.schema
        assert schema is not None
        properties = schema.model.model_json_schema()["properties"]
        routes = list(serving.model_routes(name))

        @FUZZ
        @given(route=st.sampled_from(routes), method=st.one_of(st.just("POST"), st.sampled_from(METHODS)),
               content_type=st.sampled_from(CONTENT_TYPES),
               body=bodies(properties, samples, endpoint.params.max_batch_rows,
                           endpoint.params.max_body_bytes),
               request_id=REQUEST_IDS)
        def fuzz(route: str, method: str, content_type: str | None, body: bytes, request_id: str | None
                 ) -> None:
            answer = _send(client, method, route, body, content_type, request_id)
            tried[route] += 1
            statuses[route][answer.status_code] += 1
            _check(method, route, answer)

        fuzz()
    _report(tried, statuses, record_property)
    assert all(n >= 100 for n in tried.values()), tried
    # the properties are only worth something if bodies reach the model too
    assert sum(c[200] for c in statuses.values()) > 50, statuses


@pytest.mark.timeout(300)
def test_every_route_survives_any_method_and_bytes(client: Any, record_property: Any) -> None:
    """Every route of the OpenAPI, every model's routes and unknown paths: any method, any bytes."""
    app = client.app
    names = list(app.state.service.endpoints)
    routes = [*app.openapi()["paths"], *(r for n in names for r in serving.model_routes(n)),
              "/predict", "/invocations", "/models/nobody/predict", "/models//predict", "/"]
    odd_paths = st.text(max_size=30).map(lambda t: "/" + quote(t, safe="/"))
    tried: Counter[str] = Counter()
    statuses: dict[str, Counter[int]] = defaultdict(Counter)

    @settings(FUZZ, max_examples=1500)
    @given(route=st.one_of(st.sampled_from(routes), odd_paths), method=st.sampled_from(METHODS),
           content_type=st.sampled_from(CONTENT_TYPES),
           body=st.one_of(st.binary(max_size=300), JSON.map(_encode), st.just(b"")), request_id=REQUEST_IDS)
    def fuzz(route: str, method: str, content_type: str | None, body: bytes, request_id: str | None) -> None:
        answer = _send(client, method, route, body, content_type, request_id)
        key = route if route in routes else "(other paths)"
        tried[key] += 1
        statuses[key][answer.status_code] += 1
        _check(method, route, answer)

    fuzz()
    _report(tried, statuses, record_property)
    assert set(routes) <= set(tried), set(routes) - set(tried)


def test_what_the_fuzzing_found_stays_fixed(client: Any, samples: dict[str, list[Any]]) -> None:
    """Each input that once got a 5xx or a FastAPI body, now a 4xx naming the field; /ready stays 200
    (an out-of-range entity or date-time used to fail the Feast read and mark the store down)."""
    route = serving.model_routes("fraud-detector")[0]
    good = {name: values[0] for name, values in samples.items()
            if name in ("customer_id", "merchant_id", "amount", "channel", "card_present", "event_timestamp")}
    cases: list[tuple[str, str, bytes, int, str]] = [
        ("POST", route, _encode({**good, "customer_id": 2**63}), 422, "customer_id"),
        ("POST", route, _encode({"instances": [{**good, "merchant_id": -(2**63) - 1}]}), 422,
         "instances[0].merchant_id"),
        ("POST", route, _encode({**good, "event_timestamp": "9999-12-31T23:59:59-14:00"}), 422,
         "event_timestamp"),
        ("POST", route, _encode({"instances": [good, {**good, "channel": "\ud800"}]}), 422,
         "instances[1].channel"),
        ("POST", route, _encode({**good, "\udfff": 1}), 422, "body"),  # a name pydantic refuses itself
        ("POST", route, b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, ""),
        ("GET", route, b"", 405, "method"),
        ("POST", "/no/such/route", b"{}", 404, "path"),
    ]
    for method, path, body, status, field in cases:
        answer = _send(client, method, path, body, "application/json", None)
        _check(method, path, answer)
        assert answer.status_code == status, (path, body[:100], answer.text)
        assert answer.json().get("field", "") == field, answer.text
    assert client.get("/ready").status_code == 200


# --- strategies -----------------------------------------------------------------------------------------

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
JSON = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
STRANGE = st.one_of(
    st.integers(-(2**80), 2**80),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 2**31, -(2**31) - 1, -1, 0]),
    st.floats(),  # NaN and infinity too: json.dumps writes them as the (non-standard) tokens
    st.sampled_from([1e308, -1e308, 5e-324, -0.0]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0x10", "", " ", "null", "true",
                     "9" * 400]),
    st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59.999999+14:00", "9999-12-31T23:59:59-14:00",
                     "0001-01-01T00:00:00+14:00", "2026-02-30T00:00:00Z", "2026-01-16",
                     "2026-01-16T09:30:00+23:59", "20260116T093000Z", "1768555800"]),
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates (as \\udXXX)
    JSON,
)


def bodies(properties: dict[str, Any], samples: dict[str, list[Any]], max_rows: int, max_bytes: int
           ) -> st.SearchStrategy[bytes]:
    """Request bodies for one model: rows from its JSON schema with strange values mixed in, the
    body's shapes (instances, one object, neither), sizes around the limits, bytes that are not JSON."""
    row = rows(properties, samples, clean=False)
    clean = rows(properties, samples, clean=True)
    answerable = st.one_of(st.lists(clean, min_size=1, max_size=5).map(lambda r: {"instances": r}), clean)
    payloads = st.one_of(
        st.lists(row, min_size=1, max_size=5).map(lambda r: {"instances": r}),
        row,
        st.tuples(row, st.integers(max_rows - 2, max_rows + 50)).map(lambda t: {"instances": [t[0]] * t[1]}),
        st.sampled_from([{"instances": []}, {"instances": {}}, {"instances": None}, [], {}, 0, "x", None]),
        st.tuples(st.lists(row, min_size=1, max_size=2), st.text(max_size=8), JSON).map(
            lambda t: {"instances": t[0], t[1] or "extra": t[2]}),
        JSON,
    )
    valid = st.tuples(payloads, st.booleans()).map(lambda t: _encode(t[0], ascii_only=t[1]))
    return st.one_of(
        answerable.map(_encode), answerable.map(_encode), valid, valid, valid,
        st.tuples(valid, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),  # cut short
        valid.map(lambda b: b.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")),
        st.binary(max_size=200),
        st.integers(1, 50_000).map(lambda d: b'{"instances": ' + b"[" * d + b"]" * d + b"}"),
        st.integers(1, 5000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
        st.integers(max_bytes - 10, max_bytes + 10).map(
            lambda n: (b'{"instances": [' + b" " * n)[:n - 2] + b"]}"),  # around the limit
        st.sampled_from([b"", b"null", b"NaN", b"\xef\xbb\xbf{}", b"\x00", b'{"instances": [}', b"[" * 10]),
    )


def rows(properties: dict[str, Any], samples: dict[str, list[Any]], clean: bool
         ) -> st.SearchStrategy[dict[str, Any]]:
    """Rows of one model's request: each field a real value, a value of its schema, or a strange one;
    some fields left out, some unknown ones added. A `clean` row reaches the model: real values, at
    most one field any value its schema allows."""

    @st.composite
    def row(draw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        odd = draw(st.sampled_from([*sorted(properties), None, None]))
        for name, prop in properties.items():
            real = st.sampled_from(samples[name]) if samples.get(name) else from_schema(prop)
            kinds = (("schema",) if name == odd else ("real",)) if clean else (
                ("real",) * 3 + ("schema", "schema", "strange", "missing"))
            kind = draw(st.sampled_from(kinds))
            if kind == "missing":
                continue
            out[name] = draw({"real": real, "schema": from_schema(prop), "strange": STRANGE}[kind])
        if not clean and draw(st.integers(0, 5)) == 0:
            out[draw(st.text(max_size=10))] = draw(LEAVES)
        return out

    return row()


def from_schema(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a JSON-schema property allows (the subset pydantic writes for a request model)."""
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    if "anyOf" in prop:
        return st.one_of(*(from_schema(p) for p in prop["anyOf"]))
    kind = prop.get("type")
    low, high = prop.get("minimum"), prop.get("maximum")
    if kind == "integer":
        return st.integers(None if low is None else math.ceil(low),
                           None if high is None else math.floor(high))
    if kind == "number":
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string" and prop.get("format") == "date-time":
        return st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(dt.datetime.isoformat)
    if kind == "string":
        return st.text(max_size=prop.get("maxLength", 40))
    return JSON


# --- helpers --------------------------------------------------------------------------------------------


def _send(client: Any, method: str, route: str, body: bytes, content_type: str | None,
          request_id: str | None) -> Any:
    headers: dict[str, Any] = {} if content_type is None else {"content-type": content_type}
    if request_id is not None:
        headers["x-request-id"] = request_id.encode("latin-1")  # as HTTP carries it
    return client.request(method, route, content=body, headers=headers)


def _check(method: str, route: str, answer: Any) -> None:
    """The properties of every answer: below 500, no traceback, strict JSON errors with a code."""
    status, text = answer.status_code, answer.text
    where = f"{method} {route} -> {status}: {text[:500]}"
    assert status < 500, where
    assert not TRACE.search(text), where
    if method == "HEAD":
        return
    if status >= 400:
        body = _strict_json(text, where)
        assert isinstance(body, dict) and body.get("error_code") and body.get("message"), where
        echoed = dict(answer.headers.raw).get(b"x-request-id", b"").decode("latin-1")
        assert body.get("request_id") == echoed, where
    elif status == 200 and method == "POST" and ("/predict" in route or "/invocations" in route):
        body = _strict_json(text, where)
        assert body["predictions"], where


def _strict_json(text: str, where: str) -> Any:
    """JSON as every client parses it: no NaN or Infinity tokens."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in an answer: {where}")

    return json.loads(text, parse_constant=refuse)


def _encode(payload: Any, ascii_only: bool = True) -> bytes:
    """A payload as bytes; with ascii_only=False raw UTF-8 (lone surrogates kept as escapes)."""
    text = json.dumps(payload, ensure_ascii=ascii_only)
    return text.encode("utf-8", "backslashreplace")


def _plain(value: Any) -> Any:
    """An events-table value as a JSON request carries it (date-times as ISO-8601 strings)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _report(tried: Counter[str], statuses: dict[str, Counter[int]], record_property: Any) -> None:
    for route in sorted(tried):
        print(f"{route}: {tried[route]} examples, statuses {dict(sorted(statuses[route].items()))}")
    record_property("examples", dict(tried))
    record_property("statuses", {r: dict(c) for r, c in statuses.items()})

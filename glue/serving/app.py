"""The web app of `glue serve`: FastAPI routes and transport only; scoring is glue/serving/service.py.

Why a module of its own: as in MLflow's scoring server (``mlflow/pyfunc/scoring_server``), the app
reads the body (refusing it past the model's ``serving.max_body_bytes``), hands the bytes to the
model's endpoint on a worker thread, and writes the answer; it knows nothing about models or features.

One process serves every model of the project, each on its own routes:
``POST /models/<name>/predict`` (and ``/models/<name>/invocations``). A project with one model
also answers on ``/predict`` (= ``/invocations``); with several, those answer 404 naming the routes.
Conventions follow MLflow's scoring server where they fit: JSON in and out, ``{"instances": [...]}``
in and ``predictions`` out, errors as ``{"error_code", "message"}`` (plus ``field`` naming the
offending input), and ``/health`` (``/ping``), ``/ready``, ``/version`` and ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from glue.serving.config import ServingParams, all_serving_params
from glue.serving.schema import ServingError, bad_request
from glue.serving.service import Endpoint, ScoringService

if TYPE_CHECKING:
    from glue.serving.metrics import Metrics
    from glue.settings import Settings

log = logging.getLogger(__name__)

FIRST_ROUND_WAIT_SECONDS = 120.0  # the longest a worker waits for its first load before it serves
_SERVICE_ROUTES = ("/health", "/ping", "/ready", "/version", "/metrics")
_SINGLE_ROUTES = ("/predict", "/invocations")  # a one-model project's routes


def model_routes(name: str) -> tuple[str, str]:
    """The two routes of one model: /models/<name>/predict and /models/<name>/invocations."""
    return f"/models/{name}/predict", f"/models/{name}/invocations"


def create_app(settings: Settings, params: ServingParams | Mapping[str, ServingParams] | None = None
               ) -> FastAPI:
    """The scoring app of every model; models and the Feast store load on a background thread, the
    first round before the app takes requests.

    `params`: every model's policy (default: each model's ``serving:`` and GLUE_SERVE_*), or one
    policy for all of them.
    """
    from starlette.concurrency import run_in_threadpool

    if params is None:
        policies = all_serving_params(settings)
    elif isinstance(params, ServingParams):
        policies = {model.name: params for model in settings.models}
    else:
        policies = dict(params)
    service = ScoringService(settings, policies)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        service.start()
        # Take requests once the first load round is over (loaded, or failed and said why in
        # /ready): with `--workers N` the workers share one socket, and a worker that accepted
        # before its first load answered 503 "no model loaded yet" while the others were ready
        # (3 of 10,000 requests of benchmarks/soak.py at start-up). Bounded: a registry that hangs
        # does not keep the server from starting.
        await run_in_threadpool(service.first_round.wait, FIRST_ROUND_WAIT_SECONDS)
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="glue scoring", version="2", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_exception_handler(StarletteHTTPException, _http_error)  # 404, 405: MLflow-style too
    names = list(service.endpoints)
    routes = [r for name in names for r in model_routes(name)]
    single = _SINGLE_ROUTES if len(names) == 1 else ()
    known = frozenset((*routes, *_SERVICE_ROUTES, *single))
    app.add_middleware(_Observe, metrics=service.metrics, known=known)

    def handler(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        limit = endpoint.params.max_body_bytes

        async def predict(request: Request) -> Response:
            request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
            try:
                body = await _read_body(request, limit)
                answer = await run_in_threadpool(endpoint.predict, body, request_id)
            except ServingError as err:
                endpoint.count_error(err.code)
                return _error(err, request_id)
            except Exception as exc:
                log.exception("request %s to %s failed", request_id, endpoint.name)
                endpoint.count_error("INTERNAL_ERROR")
                return _error(ServingError(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"[:500]),
                              request_id)
            return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json",
                            headers={"x-request-id": request_id})

        return predict

    listed = ", ".join(model_routes(n)[0] for n in names)

    async def no_such_route(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        wanted = request.path_params.get("name")
        what = f"no model '{wanted}'" if wanted else f"this project serves {len(names)} models"
        return _error(bad_request(f"{what}: POST to {listed}", "path", status=404), request_id)

    for name, endpoint in service.endpoints.items():
        predict = handler(endpoint)
        for path in model_routes(name):
            app.add_api_route(path, predict, methods=["POST"], include_in_schema=False)
        if len(names) == 1:
            for path in _SINGLE_ROUTES:
                app.add_api_route(path, predict, methods=["POST"], include_in_schema=False)
    if len(names) > 1:
        for path in _SINGLE_ROUTES:
            app.add_api_route(path, no_such_route, methods=["POST"], include_in_schema=False)
    for path in ("/models/{name}/predict", "/models/{name}/invocations"):
        app.add_api_route(path, no_such_route, methods=["POST"], include_in_schema=False)

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def ready() -> JSONResponse:
        ok, body = service.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def version() -> dict[str, Any]:
        _, body = service.readiness()
        return {"models": {name: {k: v for k, v in info.items() if k not in ("ready", "reason")}
                           for name, info in body["models"].items()}}

    async def metrics() -> Response:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    for path in ("/health", "/ping"):
        app.add_api_route(path, health, methods=["GET"])
    app.add_api_route("/ready", ready, methods=["GET"])
    app.add_api_route("/version", version, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``glue.serving.app:app_from_env``): settings from the environment, per worker."""
    from glue.settings import get_settings

    return create_app(get_settings())


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app under uvicorn until interrupted (what `glue serve` does)."""
    import uvicorn

    all_serving_params(_settings())  # fail on a bad serving: policy before uvicorn starts
    uvicorn.run("glue.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


def routes_of(settings: Settings) -> list[str]:
    """The prediction routes `glue serve` answers for the project's models."""
    names = [m.name for m in settings.models]
    routes = [model_routes(n)[0] for n in names]
    return [*routes, "/predict"] if len(names) == 1 else routes


def _error(err: ServingError, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error answer: ASCII JSON (a lone surrogate echoed from the input cannot break the encoding)."""
    return Response(json.dumps(err.body(request_id), separators=(",", ":")), status_code=err.status,
                    media_type="application/json", headers={**(headers or {}), "x-request-id": request_id})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no such path, wrong method) as MLflow-style error bodies."""
    assert isinstance(exc, StarletteHTTPException)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    if exc.status_code == 405:
        err = bad_request(f"method {request.method} not allowed on {request.url.path} "
                          f"(allowed: {(exc.headers or {}).get('allow', '')})", "method", status=405)
    elif exc.status_code == 404:
        err = bad_request(f"no route {request.url.path}", "path", status=404)
    else:
        err = bad_request(str(exc.detail), status=exc.status_code)
    return _error(err, request_id, exc.headers)


class _Observe:
    """Pure ASGI middleware: request count by status and latency per route (cheaper than BaseHTTP)."""

    def __init__(self, app: Any, metrics: Metrics, known: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known = known

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.known else "other"
        status = 500
        start = time.perf_counter()
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                self.metrics.requests.labels(route=route, status=str(status)).inc()
                self.metrics.latency.labels(route=route).observe(time.perf_counter() - start)

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()  # before the last byte leaves: a client that reads /metrics next sees it
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            observe()  # the app failed before answering


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (checked on the header and while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise bad_request(f"request body is {int(declared)} bytes, at most {limit}", "body", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise bad_request(f"request body is over {limit} bytes", "body", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _settings() -> Settings:
    from glue.settings import get_settings

    return get_settings()

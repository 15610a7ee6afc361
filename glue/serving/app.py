"""The web app of `glue serve`: FastAPI routes and transport only; scoring is glue/serving/service.py.

Why a module of its own: as in MLflow's scoring server (``mlflow/pyfunc/scoring_server``), the app
reads the body (refusing it past ``serving.max_body_bytes``), hands the bytes to the scoring service
on a worker thread, and writes the answer; it knows nothing about models or features.

Conventions follow MLflow's scoring server where they fit: JSON in and out, ``predictions`` in the
answer, errors as ``{"error_code", "message"}`` (plus ``field`` naming the offending input), and
``/health`` (``/ping``), ``/version`` and ``/invocations`` (same as ``/predict``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from glue.serving.config import ServingParams, serving_params
from glue.serving.schema import ServingError, bad_request
from glue.serving.service import ScoringService

if TYPE_CHECKING:
    from glue.serving.metrics import Metrics
    from glue.settings import Settings

log = logging.getLogger(__name__)

_ROUTES = ("/predict", "/invocations", "/health", "/ping", "/ready", "/version", "/metrics")


def create_app(settings: Settings, params: ServingParams | None = None) -> FastAPI:
    """The scoring app; models and the Feast store load in the background after startup."""
    from starlette.concurrency import run_in_threadpool

    service = ScoringService(settings, params or serving_params(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="glue fraud scoring", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(_Observe, metrics=service.metrics)
    limit = service.params.max_body_bytes

    async def predict(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            body = await _read_body(request, limit)
            answer = await run_in_threadpool(service.predict, body, request_id)
        except ServingError as err:
            service.metrics.errors.labels(code=err.code).inc()
            return JSONResponse(err.body(request_id), status_code=err.status,
                                headers={"x-request-id": request_id})
        except Exception as exc:
            log.exception("request %s failed", request_id)
            service.metrics.errors.labels(code="INTERNAL_ERROR").inc()
            return JSONResponse({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}",
                                 "request_id": request_id}, status_code=500)
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json",
                        headers={"x-request-id": request_id})

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def ready() -> JSONResponse:
        ok, body = service.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def version() -> dict[str, Any]:
        _, body = service.readiness()
        return {k: v for k, v in body.items() if k not in ("status", "reason")}

    async def metrics() -> Response:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    for path in ("/predict", "/invocations"):
        app.add_api_route(path, predict, methods=["POST"], include_in_schema=False)
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

    serving_params(_settings())  # fail on a bad serving: section before uvicorn starts
    uvicorn.run("glue.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


class _Observe:
    """Pure ASGI middleware: request count by status and latency per route (cheaper than BaseHTTP)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in _ROUTES else "other"
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

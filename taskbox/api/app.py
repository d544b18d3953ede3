"""The FastAPI application: routers, the API key, the body limit, and error mapping."""

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from taskbox.api.deps import require_api_key
from taskbox.api.routes import health, metrics, schedules, stats, tasks
from taskbox.api.submitter import Submitter
from taskbox.errors import TaskboxError
from taskbox.services import Services, open_services
from taskbox.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Answer 413 to a request body over TASKBOX_MAX_BODY_BYTES, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = dict(scope["headers"]).get(b"content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self.max_bytes
        ):
            response = JSONResponse(
                status_code=413, content={"detail": self._message()}
            )
            await response(scope, receive, send)
            return

        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return (
            f"request body is over {self.max_bytes} bytes (TASKBOX_MAX_BODY_BYTES); "
            "send fewer tasks per batch or a smaller payload"
        )


def create_app(settings: Settings) -> FastAPI:
    """Build the API; the store, Redis and the registry open when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services: Services = open_services(settings, "api")
        app.state.services = services
        app.state.submitter = Submitter(services)
        yield
        app.state.submitter.close()
        services.close()

    app = FastAPI(
        title="taskbox",
        summary="A durable task scheduler: submit work over REST, run it on time.",
        version="1.0.0",
        lifespan=lifespan,
        # Served below instead, behind the API key like every other endpoint.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    secured = [Depends(require_api_key)]
    _serve_docs(app, secured)
    app.include_router(health.router)
    app.include_router(tasks.router, dependencies=secured)
    app.include_router(schedules.router, dependencies=secured)
    app.include_router(stats.router, dependencies=secured)
    app.include_router(metrics.router, dependencies=secured)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _map_errors(app)
    return app


def _serve_docs(app: FastAPI, dependencies: list[Any]) -> None:
    """The OpenAPI document and its Swagger UI, which need the API key when one is set."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="taskbox")


def _map_errors(app: FastAPI) -> None:
    @app.exception_handler(TaskboxError)
    async def domain_error(request: Request, err: TaskboxError) -> JSONResponse:
        return JSONResponse(status_code=err.status_code, content={"detail": str(err)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(
        request: Request, err: RequestValidationError
    ) -> JSONResponse:
        # The answer echoes the input back, and JSON cannot carry a NaN or Infinity
        # that came in it: spell those as strings rather than fail with a 500.
        echoed = json.dumps(jsonable_encoder(err.errors()))
        detail = json.loads(echoed, parse_constant=str)
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(SQLAlchemyError)
    async def store_error(request: Request, err: SQLAlchemyError) -> JSONResponse:
        log.error("store error on %s %s: %s", request.method, request.url.path, err)
        return JSONResponse(
            status_code=503,
            content={
                "detail": "the store is unavailable; nothing was changed, try again"
            },
        )

    @app.exception_handler(redis.RedisError)
    async def redis_error(request: Request, err: redis.RedisError) -> JSONResponse:
        log.error("Redis error on %s %s: %s", request.method, request.url.path, err)
        return JSONResponse(
            status_code=503,
            content={"detail": "Redis is unavailable; try again in a moment"},
        )

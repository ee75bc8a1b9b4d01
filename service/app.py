"""create_app(): the FastAPI application with its routers and one error translation."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gentune import __version__
from gentune.service.api import health, metrics, session, studies, trainers, trials
from gentune.service.api.body_limit import BodyLimit
from gentune.service.api.deps import require_reader
from gentune.service.auth import ReadGuard, Tokens, TokenThrottle, TrustedHosts, trusted_host_names
from gentune.service.config import Settings, export_data_root, get_settings
from gentune.service.dashboard import pages
from gentune.service.dashboard.optuna import OptunaDashboardUnderPrefix
from gentune.service.db.retry import first_line, is_transient
from gentune.service.db.session import migrate
from gentune.service.errors import (
    GentuneError,
    InvalidInput,
    TooManyRequests,
    Unauthorized,
    field_errors_from_pydantic,
)
from gentune.service.monitoring import install_metrics
from gentune.service.studies.charts import ViewCache

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
DATABASE_RETRY_AFTER_S = 5


SUMMARY_CACHE_ENTRIES = 20_000
"""Finished studies' summaries kept serialized (about 3 KB each: 60 MB at most)."""


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or get_settings()
    export_data_root(settings)  # study validation checks data_dir params against it

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            migrate(settings.database_url)
        # What is loaded by now (torch among it) lives as long as the process: keep it out of
        # the collector's full passes, which otherwise pause requests for 100 ms and more.
        gc.collect()
        gc.freeze()
        yield

    app = FastAPI(
        title="gentune",
        version=__version__,
        description="Hyperparameter optimization for generative models: submit a study, "
        "watch its trials, fetch the best config and checkpoint.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.view_cache = ViewCache()
    app.state.summary_cache = ViewCache(max_entries=SUMMARY_CACHE_ENTRIES)
    app.state.tokens = tokens = Tokens(settings)  # a bad token file stops the start here
    app.state.token_throttle = throttle = TokenThrottle()
    readers = [Depends(require_reader)]
    for module in (studies, trials, trainers):
        app.include_router(module.router, prefix=API_PREFIX, dependencies=readers)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(session.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    app.include_router(metrics.router, dependencies=readers)
    install_metrics(app, settings.database_url)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        TrustedHosts,
        trusted=trusted_host_names(settings),
        open_paths=(f"{API_PREFIX}/health",),
    )
    # a2wsgi's and Starlette's type stubs disagree on the WSGI/ASGI callables; both are standard.
    optuna_dashboard = WSGIMiddleware(OptunaDashboardUnderPrefix(settings.database_url))  # type: ignore[arg-type]
    app.mount("/optuna", ReadGuard(optuna_dashboard, tokens, settings.protect_reads, throttle))  # type: ignore[arg-type]
    _install_error_handlers(app)
    return app


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at the request's path (Starlette's own 405 names only
    those of the first route that matched the path): the routing asked once per method."""
    allowed = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        for route in request.app.router.routes:
            if route.matches(scope)[0] == Match.FULL:
                allowed.append(method)
                break
    return allowed


def _error(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, "errors": errors or []})


async def _gentune_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GentuneError)
    errors = exc.errors if isinstance(exc, InvalidInput) else []
    response = _error(exc.status_code, exc.message, [e.__dict__ for e in errors])
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="gentune"'
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


BODY_UNREADABLE = (
    "could not be read as JSON: it is not UTF-8 text, nests too deeply or holds a number too "
    "long to parse"
)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors, in the service's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        response = _error(
            405, f"{request.method} is not allowed on this path; it takes {', '.join(allowed)}."
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    if exc.status_code == 404 and exc.detail == "Not Found":  # no route has this path
        return _error(
            404,
            f"Nothing is at {request.url.path}: see /docs for the API's paths (ids in them "
            "are whole numbers).",
        )
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        response = _error(
            422,
            f"Invalid request. body {BODY_UNREADABLE}",
            [{"field": "body", "message": BODY_UNREADABLE, "line": None}],
        )
    else:
        response = _error(exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = exc.body
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
            body = None
    errors = field_errors_from_pydantic(exc.errors(), body)
    summary = "; ".join(
        f"{e.field} {e.message}" if e.field == "body" else f"{e.field}: {e.message}"
        for e in errors[:5]
    )
    return _error(422, f"Invalid request. {summary}", [e.__dict__ for e in errors])


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    if not is_transient(exc):
        log.exception("database error", exc_info=exc)
        return _error(500, "The database refused a query; the service's log has the details.")
    log.warning("database unreachable: %s", first_line(exc))
    response = _error(
        503,
        "The database is unreachable right now (restarting or down); nothing was changed. "
        "Running studies go on and catch up once it is back; try again in a few seconds.",
    )
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON ``{"detail", "errors"}`` with its status: translated here,
    once."""
    app.add_exception_handler(GentuneError, _gentune_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(StorageInternalError, _database_error)

"""The one translation between cords and the engine: request parsing and error mapping.

The chute's cords take the raw JSON body (so the SDK's opaque "Invalid input parameters" never
answers) and ``await cord_call(...)``, which checks the values (``payload.check_values``),
validates the body with the request model, runs the engine in a worker thread inside a
``CallerScope`` (so a client that disconnects has its queued work dropped) and maps
``EmbeddingsError`` to an HTTP answer that names the field and the limit, in the dialect of the
route (``dialects``: the native ``{"detail": {...}}``, OpenAI's, TEI's). ``install_boundary``
puts the request guard (``http_guard``) outside everything and renders every other answer (404,
405, the SDK's own errors, unexpected failures) the same way.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dataclass_field
from typing import Any, Callable, TypeVar

import orjson
from fastapi import HTTPException
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..engine.caller import CallerScope, run_in_scope
from .dialects import Dialect, native
from ..errors import ERROR_CLASSES, EmbeddingsError, InvalidInput
from .guard import RequestGuard, error_response, internal_error
from .payload import check_values, field_path
from ..settings import Settings

M = TypeVar("M", bound=BaseModel)

_LIMIT_KEYS = ("max_length", "min_length", "le", "ge", "lt", "gt", "expected", "pattern")
# Engine calls run here, not in the SDK's cord thread: that thread's event loop must stay free to
# hear a client disconnect (the SDK cancels the cord then) while the engine waits for the model.
_ENGINE_CALLS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="engine-call")
_ERROR_CLASS_BY_STATUS = {cls.status: cls for cls in reversed(ERROR_CLASSES)}  # the most general class
# Where a cord's result is turned into JSON. On Chutes the SDK orjson-dumps it itself. On the local
# server (``chutes run --dev``) the SDK hands it to FastAPI, whose ``jsonable_encoder`` walks every
# float in Python on the event loop: 0.8 ms of the loop's time for one 384-float vector, the largest
# single cost of a request there (docs/benchmarks.md, "What the service adds in front of TEI").
# There, cords return the same orjson bytes, made in the engine's thread.
_LOCAL_SERVER = os.environ.get("CHUTES_DEV_MODE", "").lower() == "true"


def _limit(ctx: dict[str, Any] | None) -> Any:
    for key in _LIMIT_KEYS:
        if ctx and key in ctx:
            value = ctx[key]
            return value if isinstance(value, (int, float, str)) else str(value)
    return None


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """An ``InvalidInput`` naming the first broken field and limit, listing all of them."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        field = field_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "this field is required"
        problems.append({"field": field, "message": msg, "limit": _limit(err.get("ctx"))})
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return InvalidInput(f"{first['field']}: {first['message']}{more}", field=first["field"], limit=first["limit"], errors=problems)


def parse_request(model: type[M], body: Any) -> M:
    """Validate a raw JSON body against a request model.

    Raises:
        MalformedRequest: the body nests deeper than the limit.
        InvalidInput: NaN/Infinity or an integer outside 64 bits anywhere, or a broken field
            (naming the field and the limit).
    """
    body = {} if body is None else body
    check_values(body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


class ServiceHTTPException(HTTPException):
    """A service error on its way out of a cord; rendered in the route's dialect by the handler."""

    def __init__(self, error: EmbeddingsError) -> None:
        super().__init__(status_code=error.status, detail=error.message)
        self.error = error


def http_error(err: EmbeddingsError) -> HTTPException:
    """The exception a cord raises for a service error (the handler renders it)."""
    return ServiceHTTPException(err)


async def cord_call(model: type[M], body: Any, handler: Callable[[M], Any]) -> Any:
    """Parse ``body``, run ``handler`` and return its plain result (``rendered``); errors become
    HTTP answers.

    If the cord is cancelled (the SDK does that when the client disconnects), the caller's work
    still waiting for the model is dropped.
    """
    try:
        request = parse_request(model, body)
    except EmbeddingsError as err:
        raise http_error(err) from None
    scope = CallerScope()
    future = _ENGINE_CALLS.submit(run_in_scope, scope, lambda: rendered(handler(request)))
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        scope.leave()
        raise
    except EmbeddingsError as err:
        raise http_error(err) from None


def rendered(result: Any) -> Any:
    """A cord's plain result as it leaves the cord: as is on Chutes (the SDK serialises it with
    ``orjson.dumps``), as those same bytes on the local server (see ``_LOCAL_SERVER``)."""
    if _LOCAL_SERVER:
        return Response(orjson.dumps(result), media_type="application/json")
    return result


def run_cord(handler: Callable[[], Any]) -> Any:
    """Run a body-less cord (GET: cheap, never queued) with the same error mapping."""
    try:
        return handler()
    except EmbeddingsError as err:
        raise http_error(err) from None


@dataclass(frozen=True)
class Route:
    """One declared route: what the OpenAPI document and the HTTP layer need to know of it."""

    method: str
    path: str
    internal_path: str  # the SDK's own path for the cord (production routes by both)
    summary: str
    request: Any  # a pydantic model class, or None
    response: Any  # a pydantic model class, or None (a body that is not JSON)
    dialect: Dialect
    uses_model: str | None  # the model it queues work for ("embedder", "reranker"): refused early while that queue is full
    media_type: str


@dataclass
class RouteTable:
    """Every route of the chute, filled in by the chute file as it declares cords."""

    error_models: dict[str, Any] = dataclass_field(default_factory=dict)  # dialect name -> its error body model
    routes: list[Route] = dataclass_field(default_factory=list)
    dialects: dict[str, Dialect] = dataclass_field(default_factory=dict)
    model_paths: dict[str, str] = dataclass_field(default_factory=dict)  # path -> the model it queues work for
    labels: dict[str, str] = dataclass_field(default_factory=dict)  # either path -> public path

    def add(self, method: str, path: str, internal_path: str, summary: str, request: Any, response: Any,
            dialect: Dialect, uses_model: str | None, media_type: str) -> None:
        """Record a route under its public and internal paths."""
        self.routes.append(Route(method, path, internal_path, summary, request, response, dialect, uses_model,
                                 media_type))
        for key in (path, internal_path):
            self.dialects[key] = dialect
            self.labels[key] = path
            if uses_model:
                self.model_paths[key] = uses_model

    def dialect(self, path: str) -> Dialect:
        """The dialect ``path`` speaks (the native one for paths no route declared)."""
        return self.dialects.get(path, native)

    def route_label(self, path: str) -> str:
        """``path`` as a metrics label: a declared public path, else ``other`` (bounded cardinality)."""
        return self.labels.get(path, "other")


def _error_from_http(exc: StarletteHTTPException) -> EmbeddingsError:
    """Starlette's and the SDK's own HTTP errors (404, 405, 400 "Invalid input parameters", ...)
    as the service error of that status."""
    if isinstance(exc, ServiceHTTPException):
        return exc.error
    cls = _ERROR_CLASS_BY_STATUS.get(exc.status_code, EmbeddingsError)
    err = cls(str(exc.detail))
    err.status = exc.status_code
    allow = (getattr(exc, "headers", None) or {}).get("Allow")
    if allow:
        err.extra["allow"] = [m.strip() for m in allow.split(",")]
    return err


def install_boundary(app: Any, routes: RouteTable) -> None:
    """Wrap ``app`` (the chute) in the request guard and render every error in its route's dialect.

    The guard wraps the whole middleware stack, Starlette's error middleware and the SDK's
    (dev or encryption) middleware included, so it sees each request before anything reads its
    body. It reads the settings the startup hook stores in ``app.settings``, and refuses requests
    to ``routes.model_paths`` early while ``app.engine`` is overloaded.
    """

    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(_error_from_http(exc), routes.dialect(request.url.path))

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        err = exc if isinstance(exc, EmbeddingsError) else internal_error(exc, request.method, request.url.path)
        return error_response(err, routes.dialect(request.url.path))

    app.add_exception_handler(StarletteHTTPException, http_exception)
    app.add_exception_handler(Exception, unhandled)
    build = app.build_middleware_stack
    fallback: list[Settings] = []

    def settings() -> Settings:
        current = getattr(app, "settings", None)
        if current is None:  # a request before start-up finished: the environment's settings
            if not fallback:
                fallback.append(Settings.from_env())
            current = fallback[0]
        return current

    def admission(path: str) -> None:
        engine = getattr(app, "engine", None)
        if engine is not None and path in routes.model_paths:
            engine.refuse_if_overloaded(routes.model_paths[path])

    def observe(method: str, path: str, status: int, seconds: float) -> None:
        metrics = getattr(app, "metrics", None)
        if metrics is not None:
            metrics.observe_request(routes.route_label(path), method, status, seconds)

    app.build_middleware_stack = lambda: RequestGuard(build(), lambda: app.routes, settings, admission,
                                                      routes.dialect, observe)

"""The one translation between cords and the engine: request parsing and error mapping.

The chute's cords take the raw JSON body (so the SDK's opaque "Invalid input parameters" never
answers) and ``await cord_call(...)``, which checks the values (``payload.check_values``),
validates the body with the request model, runs the engine in a worker thread inside a
``CallerScope`` (so a client that disconnects has its queued work dropped) and maps
``EmbeddingsError`` to an ``HTTPException`` whose detail names the field and the limit.
``install_boundary`` puts the request guard (``http_guard``) outside everything and makes every
other answer (404, 405, the SDK's own errors, unexpected failures) the same ``{"detail": {...}}``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Collection, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from .caller import CallerScope, run_in_scope
from .errors import ERROR_CLASSES, EmbeddingsError, InvalidInput
from .http_guard import RequestGuard, error_response, internal_error_response
from .payload import check_values, field_path
from .settings import Settings

M = TypeVar("M", bound=BaseModel)

_LIMIT_KEYS = ("max_length", "min_length", "le", "ge", "lt", "gt", "expected", "pattern")
# Engine calls run here, not in the SDK's cord thread: that thread's event loop must stay free to
# hear a client disconnect (the SDK cancels the cord then) while the engine waits for the model.
_ENGINE_CALLS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="engine-call")
_ERROR_TYPE_BY_STATUS = {cls.status: cls.error_type for cls in ERROR_CLASSES}


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


def http_error(err: EmbeddingsError) -> HTTPException:
    """The ``HTTPException`` for a service error (429/503 carry Retry-After)."""
    headers = {"Retry-After": str(err.extra.get("retry_after_s", 1))} if err.status in (429, 503) else None
    return HTTPException(status_code=err.status, detail=err.to_body(), headers=headers)


async def cord_call(model: type[M], body: Any, handler: Callable[[M], dict[str, Any]]) -> dict[str, Any]:
    """Parse ``body``, run ``handler`` and return its plain dict; errors become HTTP answers.

    If the cord is cancelled (the SDK does that when the client disconnects), the caller's work
    still waiting for the model is dropped.
    """
    try:
        request = parse_request(model, body)
    except EmbeddingsError as err:
        raise http_error(err) from None
    scope = CallerScope()
    future = _ENGINE_CALLS.submit(run_in_scope, scope, lambda: handler(request))
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        scope.leave()
        raise
    except EmbeddingsError as err:
        raise http_error(err) from None


def run_cord(handler: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a body-less cord (GET: cheap, never queued) with the same error mapping."""
    try:
        return handler()
    except EmbeddingsError as err:
        raise http_error(err) from None


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's and the SDK's HTTP errors (404, 405, 400 "Invalid input parameters", ...) in
    the documented shape; ours already carry a dict detail."""
    detail = exc.detail
    if not isinstance(detail, dict):
        detail = {"error_type": _ERROR_TYPE_BY_STATUS.get(exc.status_code, "error"), "message": str(detail)}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, EmbeddingsError):
        return error_response(exc)
    return internal_error_response(exc, request.method, request.url.path)


def install_boundary(app: Any, model_paths: Collection[str] = ()) -> None:
    """Wrap ``app`` (the chute) in the request guard and map every error to the documented shape.

    The guard wraps the whole middleware stack, Starlette's error middleware and the SDK's
    (dev or encryption) middleware included, so it sees each request before anything reads its
    body. It reads the settings the startup hook stores in ``app.settings``, and refuses requests
    to ``model_paths`` (routes that queue forward passes; filled in as cords are declared) early
    while ``app.engine`` is overloaded.
    """
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unhandled)
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
        if engine is not None and path in model_paths:
            engine.refuse_if_overloaded()

    app.build_middleware_stack = lambda: RequestGuard(build(), lambda: app.routes, settings, admission)

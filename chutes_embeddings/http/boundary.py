"""The HTTP boundary: the request guard outside everything, and every error in its route's dialect.

``install_boundary`` puts the request guard (``guard``) outside the whole middleware stack and
renders every answer that is not a cord's result (404, 405, the SDK's own errors, unexpected
failures, the cords' ``ServiceHTTPException``) in the dialect of the route.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import EmbeddingsError, for_status
from ..settings import Settings
from .cords import ServiceHTTPException
from .guard import RequestGuard, error_response, internal_error
from .routes import TEI_PREFIX, RouteTable


def _error_from_http(exc: StarletteHTTPException) -> EmbeddingsError:
    """Starlette's and the SDK's own HTTP errors (404, 405, 400 "Invalid input parameters", ...)
    as the service error of that status."""
    if isinstance(exc, ServiceHTTPException):
        return exc.error
    cls = for_status(exc.status_code)
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
            engine.check_admission([routes.model_paths[path]])

    def observe(method: str, path: str, status: int, seconds: float) -> None:
        metrics = getattr(app, "metrics", None)
        if metrics is not None:
            metrics.observe_request(routes.route_label(path), method, status, seconds)

    def model_route(method: str, path: str) -> tuple[str, str] | None:
        """``/tei/{model}/embed`` as ``(/tei/embed, model)``; ``/tei/{model}`` (TEI's root) only for a
        name a model has, so that any other ``/tei/<path>`` stays a 404."""
        found = routes.tei_model_route(method, path)
        engine = getattr(app, "engine", None)
        if found is not None and found[0] == TEI_PREFIX and (engine is None or engine.models.find(found[1]) is None):
            return None
        return found

    def build_stack() -> RequestGuard:
        if settings().local_server:  # the guard parses and hands on the body (guard.hand_on)
            app.user_middleware = [m for m in app.user_middleware if not _is_sdk_dev_middleware(m.cls)]
        return RequestGuard(build(), lambda: app.routes, settings, admission, routes.dialect, observe,
                            lambda path: path in routes.token_gets, model_route)

    app.build_middleware_stack = build_stack


def _is_sdk_dev_middleware(cls: Any) -> bool:
    """The SDK's ``DevMiddleware`` (named, not imported: importing the SDK's entrypoint module
    pulls in its whole CLI)."""
    return getattr(cls, "__name__", "") == "DevMiddleware" and getattr(cls, "__module__", "").startswith("chutes.")

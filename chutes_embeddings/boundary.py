"""The one translation between cords and the engine: request parsing and error mapping.

The chute's cords take the raw JSON body (so the SDK's opaque "Invalid input parameters" never
answers) and call ``cord_call``, which validates it with the request model, runs the engine and
maps ``EmbeddingsError`` to an ``HTTPException`` whose detail names the field and the limit.
``install_error_handlers`` makes bodies that are not JSON a 400 and any other failure a JSON 500
with a request id, never a traceback.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, TypeVar

from fastapi import HTTPException
from loguru import logger
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import EmbeddingsError, InvalidInput

M = TypeVar("M", bound=BaseModel)

_LIMIT_KEYS = ("max_length", "min_length", "le", "ge", "lt", "gt", "expected", "pattern")


def _field_name(loc: tuple[Any, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


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
        field = _field_name(tuple(err["loc"]))
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
        InvalidInput: naming the field and the limit broken.
    """
    try:
        return model.model_validate({} if body is None else body)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


def http_error(err: EmbeddingsError) -> HTTPException:
    """The ``HTTPException`` for a service error (429 carries Retry-After)."""
    headers = {"Retry-After": str(err.extra.get("retry_after_s", 1))} if err.status in (429, 503) else None
    return HTTPException(status_code=err.status, detail=err.to_body(), headers=headers)


def cord_call(model: type[M], body: Any, handler: Callable[[M], dict[str, Any]]) -> dict[str, Any]:
    """Parse ``body``, run ``handler`` and return its plain dict; errors become HTTP answers."""
    try:
        return handler(parse_request(model, body))
    except EmbeddingsError as err:
        raise http_error(err) from None


def run_cord(handler: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a body-less cord (GET) with the same error mapping."""
    try:
        return handler()
    except EmbeddingsError as err:
        raise http_error(err) from None


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        body = InvalidInput(
            f"the request body is not valid JSON ({exc.__class__.__name__}); send a JSON object",
            field="body",
        ).to_body()
        return JSONResponse({"detail": body}, status_code=400)
    request_id = uuid.uuid4().hex[:12]
    logger.opt(exception=exc).error("unhandled error on {} (request {})", request.url.path, request_id)
    detail = EmbeddingsError(f"internal error; quote request id {request_id} when reporting it").to_body()
    return JSONResponse({"detail": {**detail, "request_id": request_id}}, status_code=500)


def install_error_handlers(app: Any) -> None:
    """Answer non-JSON bodies with 400 and anything unexpected with a JSON 500.

    These run in Starlette's outermost middleware, so they also catch what fails before a cord
    runs (the dev middleware parsing the body).
    """
    app.add_exception_handler(Exception, _unhandled)

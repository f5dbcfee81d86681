"""Running a cord: parse the body once, call the dialect's function in an engine thread, render.

Each cord of the chute file is one named function that awaits ``cord_call(chute, Request, body,
dialect_function, target)``: the body is checked (``payload.check_values``) and validated by the
request model (errors name the field and the limit), the dialect function runs with the target
(the engine or the store service) in a worker thread inside a ``CallerScope`` (so a client that
disconnects has its queued work dropped), and an ``EmbeddingsError`` becomes an HTTP answer that
the boundary renders in the route's dialect.

Before anything else, ``cord_call`` asks the configured store access (``access.py``) whether the
body's token may use the route (the request model's ``access`` says what the route needs), and a
store route's verb gets the store within that caller's reach (``store.tenancy``): this is the one
place every cord's token is checked.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import orjson
from fastapi import HTTPException
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from ..access import COMPUTE, TOKEN_FIELD, StoreAccess
from ..engine.caller import CallerScope, run_in_scope
from ..errors import EmbeddingsError, InvalidInput
from ..store.tenancy import NamespacedStore
from .payload import check_values, field_path, read_part

M = TypeVar("M", bound=BaseModel)

_LIMIT_KEYS = ("max_length", "min_length", "le", "ge", "lt", "gt", "expected", "pattern")
# Engine calls run here, not in the SDK's cord thread: that thread's event loop must stay free to
# hear a client disconnect (the SDK cancels the cord then) while the engine waits for the model.
_ENGINE_CALLS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="engine-call")


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
    return InvalidInput(
        f"{first['field']}: {first['message']}{more}", field=first["field"], limit=first["limit"], errors=problems
    )


def parse_request(model: type[M], body: Any) -> M:
    """Validate a raw JSON body against a request model.

    Raises:
        MalformedRequest: the body nests deeper than the limit.
        InvalidInput: NaN/Infinity or an integer outside 64 bits anywhere, or a broken field
            (naming the field and the limit).
    """
    body = {} if body is None else body  # no body at all: every field takes its default
    check_values(read_part(model, body))
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


def authorized_target(access: StoreAccess, model: type[BaseModel], body: Any, target: Any) -> Any:
    """What the route's verb may work on for the caller whose token is in ``body``: ``target``
    itself on a compute route, the store service within the caller's reach on a store route.

    The token is read from the raw body, before the body is validated, so a caller without the
    right token learns nothing from validation errors either.

    Raises:
        Unauthorized: the route needs a token and none, or an unknown one, came (401).
        Forbidden: the token's scope is smaller than the route needs (403).
    """
    needs = getattr(model, "access", COMPUTE)
    token = body.get(TOKEN_FIELD) if isinstance(body, dict) else None
    grant = access.authorize(token if isinstance(token, str) else None, needs)
    if needs == COMPUTE or grant is None:
        return target
    return NamespacedStore(target, grant.namespace, grant.every_namespace)


async def cord_call(chute: Any, model: type[M], body: Any, verb: Callable[[Any, M], Any], target: Any) -> Any:
    """Check the caller's token (``authorized_target``), parse ``body`` as ``model``, run
    ``verb(target, request)`` in an engine thread and return its plain result (``rendered`` for
    ``chute.settings``); errors become HTTP answers.

    If the cord is cancelled (the SDK does that when the client disconnects), the caller's work
    still waiting for the model is dropped.
    """
    try:
        target = authorized_target(chute.settings.access, model, body, target)
        request = parse_request(model, body)
    except EmbeddingsError as err:
        raise http_error(err) from None
    local_server = chute.settings.local_server
    scope = CallerScope()
    future = _ENGINE_CALLS.submit(run_in_scope, scope, _call_rendered, verb, target, request, local_server)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        scope.leave()
        raise
    except EmbeddingsError as err:
        raise http_error(err) from None


def _call_rendered(verb: Callable[[Any, Any], Any], target: Any, request: Any, local_server: bool) -> Any:
    return rendered(verb(target, request), local_server)


def rendered(result: Any, local_server: bool) -> Any:
    """A cord's plain result as it leaves the cord: as is on Chutes (the SDK serialises it with
    ``orjson.dumps``), as those same bytes on the local server.

    On the local server (``chutes run --dev``) the SDK would hand the result to FastAPI, whose
    ``jsonable_encoder`` walks every float in Python on the event loop: the largest single cost of
    a request there (docs/benchmarks.md, "What the service adds in front of TEI"). There, cords
    return the same orjson bytes, made in the engine's thread.
    """
    if local_server:
        return Response(orjson.dumps(result), media_type="application/json")
    return result


def run_cord(verb: Callable[[Any], Any], target: Any) -> Any:
    """Run a body-less cord (GET: cheap, never queued) with the same error mapping."""
    try:
        return verb(target)
    except EmbeddingsError as err:
        raise http_error(err) from None

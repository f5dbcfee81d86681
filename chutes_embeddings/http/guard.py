"""The chute's outermost ASGI layer: what every request must pass before anything parses it.

Everywhere (local and on Chutes):
- a body over ``max_body_bytes`` is refused with 413, from ``Content-Length`` before a byte is
  read, or once a streamed body has passed the limit (what follows is dropped unread); a body
  that does not arrive within ``body_timeout_s`` gets 408;
- while the engine refuses new work (overloaded), a request to a route that queues model work
  gets its 429 as soon as its body has arrived, before anything parses or validates it;
- an exception nothing else answered becomes a JSON 500 and one log line, never a traceback sent
  to the caller or a second copy logged by the server;
- a body on a request that takes none (a GET or DELETE with one) is read and dropped before the
  answer, and an answer given before a body was read says ``Connection: close``: the server
  closes such a connection silently, and the client's next request on it would get no answer.

On the local server only (``chutes run --dev``: ``make serve`` and the tests), which has no
authentication in front of it:
- the SDK's own ``/_*`` routes (process list with environments, file reads, URL fetches, ...)
  answer 404: on Chutes the platform's validator uses them over an authenticated channel;
- the ``Host`` must be a loopback name (403 otherwise), so a web page cannot reach the server
  through DNS rebinding;
- a POST must declare ``application/json`` (415 otherwise): browsers send ``text/plain`` bodies
  cross-origin without a CORS preflight, JSON ones never;
- unknown paths answer 404 and wrong methods 405 before the body is read, and the body is parsed
  here, once, with the limits of ``payload.loads_body`` (400 naming the limit; a body that is no
  JSON object is refused too, naming ``body``), and handed on as the SDK's dev middleware would
  hand it (``request.state.decrypted``): ``install_boundary`` leaves that middleware out of the
  local server's stack, the costliest layer of a request there (docs/benchmarks.md, "The cost of
  one request");
- a TEI route under a model's prefix, ``POST /tei/{model}/embed`` (or ``/tei/{model}``, TEI's root),
  is the route ``/tei/embed`` with ``model`` set in the body handed on: TEI's clients take a URL and
  send no model (on Chutes, whose gateway routes fixed paths only, a body's ``model`` picks it);
- with store tokens configured, ``Authorization: Bearer <token>`` is a store token (``access.py``):
  the body handed on gets it as its ``token`` field unless the body has one (the body's wins: an
  OpenAI SDK sends its api_key as a bearer token whatever ``extra_body`` says), and a GET that
  takes a token (``GET /store/collections``) gets a body of only that field. On Chutes the gateway
  sends its own headers, never the caller's, so a token travels in the body there.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from loguru import logger
from starlette.responses import JSONResponse
from starlette.routing import Match

from ..access import MAX_TOKEN_CHARS, TOKEN_FIELD
from ..errors import (
    EmbeddingsError,
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from ..settings import Settings
from .dialects import Dialect
from .payload import loads_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# (method, path) pairs that matched a route in full: the local server's route check is a dict
# lookup after the first request (bounded: only routes that exist are kept).
ROUTE_CACHE_SIZE = 1024
BODY_METHODS = ("POST", "PUT", "PATCH")
LOGGED_FRAMES = 12


def host_name(host_header: str) -> str:
    """``[::1]:8000`` -> ``::1``, ``localhost:8000`` -> ``localhost``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestGuard:
    """ASGI middleware applying the rules in the module docstring.

    Args:
        app: the application inside (Starlette's whole middleware stack).
        routes: the routes to match on the local server (404/405 before the body is read).
        settings: a callable returning the current ``Settings`` (set by the startup hook).
        admission: called with the path of each request with a body; raises ``Overloaded`` when
            that path queues model work and the engine refuses new work now.
        dialect_for: the dialect a path speaks (its errors are rendered in that dialect's shape).
        observe: called once per answered request with (method, path, status, seconds).
        takes_token: whether a GET to this path takes a token (local server: from its header).
        model_route: ``(route, model)`` for a path under a model's prefix (``/tei/{model}/embed``),
            else None.
    """

    def __init__(self, app: ASGIApp, routes: Callable[[], list[Any]], settings: Callable[[], Settings],
                 admission: Callable[[str], None], dialect_for: Callable[[str], Dialect],
                 observe: Callable[[str, str, int, float], None],
                 takes_token: Callable[[str], bool] = lambda path: False,
                 model_route: Callable[[str, str], tuple[str, str] | None] = lambda method, path: None) -> None:
        self.app = app
        self.model_route = model_route
        self.takes_token = takes_token
        self.routes = routes
        self.settings = settings
        self.admission = admission
        self.dialect_for = dialect_for
        self.observe = observe
        self._routed: set[tuple[str, str]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        body = _BodyState(done=not _has_body(scope))
        try:
            receive_next = await self._screen(scope, receive, self.settings(), body)
            if receive_next is None:
                return  # the client went away while sending its body
            await self.app(scope, receive_next, tracking_send)
        except EmbeddingsError as err:
            logger.info("refused {} {}: {} {}", scope["method"], scope["path"], err.status, err.error_type)
            if not status:
                await _answer(error_response(err, self.dialect_for(scope["path"])), body, scope, receive, tracking_send)
        except Exception as exc:  # the last line of defence: answer, log once, never re-raise to the server
            err = internal_error(exc, scope["method"], scope["path"])
            if not status:
                await _answer(error_response(err, self.dialect_for(scope["path"])), body, scope, receive, tracking_send)
        finally:
            if status:
                self.observe(scope["method"], scope["path"], status, time.perf_counter() - started)

    async def _screen(self, scope: Scope, receive: Receive, settings: Settings, state: "_BodyState") -> Receive | None:
        """Check the request; return the ``receive`` the app should use (None: client gone)."""
        method, path = scope["method"], scope["path"]
        prefixed = None
        if settings.local_server:
            if host_name(_header(scope, b"host") or "") not in LOOPBACK_HOSTS:
                raise Forbidden("the local server answers loopback host names only (localhost, 127.0.0.1, [::1])",
                                field="Host", limit=list(LOOPBACK_HOSTS))
            prefixed = self.model_route(method, path)
            if prefixed is not None:  # /tei/{model}/embed: the route /tei/embed for that model
                path = scope["path"] = prefixed[0]
                scope["raw_path"] = path.encode()
            self._match_route(scope, path, method)
        if method not in BODY_METHODS:
            if settings.local_server:
                token = bearer_token(scope) if settings.access.enabled else None
                hand_on(scope, {TOKEN_FIELD: token} if token and self.takes_token(path) else None)
            if state.done:
                return receive
            # a GET or DELETE that carries a body: read it (and drop it) before answering; the
            # server closes a connection whose request body was not read by the time the answer
            # went out, without saying so, and the client's next request on it got no answer
            if await self._read_body(receive, settings) is None:
                return None
            state.done = True
            return _replay(b"", receive)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            raise PayloadTooLarge(f"the body has {int(length)} bytes; at most {settings.max_body_bytes} are accepted",
                                  field="body", limit=settings.max_body_bytes)
        if settings.local_server:
            media = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise UnsupportedMediaType(f"send the body as application/json (got {media or 'no Content-Type'})",
                                           field="Content-Type", limit="application/json")
        body = await self._read_body(receive, settings)
        if body is None:
            return None
        state.done = True
        self.admission(path)  # read (so the client hears the answer) but not parsed
        if settings.local_server:
            parsed = loads_body(body)  # 400 here on a body that is no JSON
            if not isinstance(parsed, dict):  # every request is an object; the SDK reads a falsy body
                # (null, "", 0, false, []) as no body, which a route of optional fields would take
                raise InvalidInput(f"the body must be a JSON object, not {_json_kind(parsed)}", field="body")
            if prefixed is not None:
                parsed = {**parsed, "model": prefixed[1]}
            hand_on(scope, with_bearer_token(parsed, scope) if settings.access.enabled else parsed)
        return _replay(body, receive)

    def _match_route(self, scope: Scope, path: str, method: str) -> None:
        if path.startswith("/_"):
            raise NotFound(f"no route {path}", field="path")
        if (method, path) in self._routed:
            return
        allowed: set[str] = set()
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                if len(self._routed) < ROUTE_CACHE_SIZE:
                    self._routed.add((method, path))
                return
            if match == Match.PARTIAL:
                allowed |= set(getattr(route, "methods", None) or ())
        if allowed:
            raise MethodNotAllowed(f"{path} answers {', '.join(sorted(allowed))}, not {method}", field="method",
                                   limit=sorted(allowed), allow=sorted(allowed))
        raise NotFound(f"no route {path}", field="path")

    @staticmethod
    async def _read_body(receive: Receive, settings: Settings) -> bytes | None:
        """The whole body, or None when the client went away.

        Raises:
            PayloadTooLarge: past ``max_body_bytes``. The rest is still read (and dropped) until
                the body ends or its time is up, because a client that is still sending would
                not read the answer (and would hang on a full socket).
            RequestTimeout: the body did not end within ``body_timeout_s``.
        """
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                if size > settings.max_body_bytes:
                    break
                raise RequestTimeout(f"the body did not arrive within {settings.body_timeout_s:g} s",
                                     field="body", limit=settings.body_timeout_s) from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= settings.max_body_bytes:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size > settings.max_body_bytes:
            raise PayloadTooLarge(f"the body has {size} bytes; at most {settings.max_body_bytes} are accepted",
                                  field="body", limit=settings.max_body_bytes)
        return b"".join(chunks)


@dataclass
class _BodyState:
    done: bool  # the whole request body has been read


async def _answer(response: JSONResponse, body: _BodyState, scope: Scope, receive: Receive, send: Send) -> None:
    """Send an early answer; if the request body was not read, the connection cannot carry another
    request (its unread bytes would be taken for one), so say it closes."""
    if not body.done:
        response.headers["connection"] = "close"
    await response(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    """Whether the request says a body follows (a length above 0, or chunks)."""
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return _header(scope, b"transfer-encoding") is not None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), type(value).__name__)


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if the request has one that can be
    a store token (a longer one, some other service's key, is no token here)."""
    scheme, _, token = (_header(scope, b"authorization") or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS else None


def with_bearer_token(body: Any, scope: Scope) -> Any:
    """``body`` with the bearer token as its ``token`` field, unless it has one (the body's wins)."""
    if isinstance(body, dict) and TOKEN_FIELD not in body:
        token = bearer_token(scope)
        if token:
            return {**body, TOKEN_FIELD: token}
    return body


def hand_on(scope: Scope, body: Any) -> None:
    """Hand the parsed body on as the SDK's dev middleware does (``request.state.decrypted``,
    read by the cord handler), so the local server parses it once, here."""
    state = scope.setdefault("state", {})
    state["decrypted"] = body
    state["serialized"] = False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the body already read, then what the client sends next
    (the SDK waits on it for ``http.disconnect`` to cancel work whose caller has gone)."""
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def error_response(err: EmbeddingsError, dialect: Dialect) -> JSONResponse:
    """A service error in ``dialect``'s shape, with the headers its class calls for (``err.headers()``)."""
    status, body = dialect.render_error(err)
    return JSONResponse(body, status_code=status, headers=err.headers())


def internal_error(exc: BaseException, method: str, path: str) -> EmbeddingsError:
    """The 500 for an unexpected exception: a request id to quote, never the exception itself.

    The exception is logged once: its type and the last ``LOGGED_FRAMES`` frames (file, line,
    function, source line), without its message, the exceptions it was raised from, or local
    variables, any of which can quote a request's texts or stored records.
    """
    request_id = getattr(exc, "_embeddings_request_id", None)
    if request_id is None:
        request_id = uuid.uuid4().hex[:12]
        exc._embeddings_request_id = request_id  # the outer guard sees the same exception again
        frames = "".join(traceback.format_tb(exc.__traceback__, limit=-LOGGED_FRAMES)).rstrip()
        logger.error("unhandled {} on {} {} (request {}; message withheld)\n{}", type(exc).__qualname__, method,
                     path, request_id, frames)
    return EmbeddingsError(f"internal error; quote request id {request_id} when reporting it", request_id=request_id)

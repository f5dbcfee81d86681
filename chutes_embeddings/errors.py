"""The service's error tree: every failure a caller can see, with its HTTP status, once.

``EmbeddingsError`` subclasses carry ``status`` and ``error_type``; ``to_body()`` and ``headers()``
are what the HTTP layer sends and ``from_body()`` is how the client rebuilds the same class. Each
class also says whether a client may send the request again (``retryable``, ``acted_on``), which
``Retry-After`` its answer carries (``retry_after``), which requests can get it (``scope``) and how
the OpenAPI document describes its status (``description``). Nothing else in the project knows a
status code.

    EmbeddingsError (500 internal)
    +-- InvalidInput (422 invalid_input)           the request broke a rule; names the field and limit
    |   +-- MalformedRequest (400 malformed_request)  the body is not JSON, too deep, a number too long
    |   +-- PayloadTooLarge (413 payload_too_large)   the body is over EMBEDDINGS_MAX_BODY_BYTES
    |   +-- UnsupportedMediaType (415 unsupported_media_type)  a local-server POST that is not JSON
    +-- Unauthorized (401 unauthorized)             no store token, or one that is not configured
    +-- Forbidden (403 forbidden)                   a token of too small a scope; a local-server Host not loopback
    +-- NotFound (404 not_found)                    a route, collection or record that does not exist
    +-- MethodNotAllowed (405 method_not_allowed)   a route asked with the wrong method
    +-- RequestTimeout (408 request_timeout)        the body did not arrive in time
    +-- Conflict (409 conflict)                     e.g. vectors of another model or dimension
    +-- NotConfigured (424 not_configured)          a model the route needs is not configured (names the setting)
    +-- Overloaded (429 overloaded)                 queue full; retry after ``retry_after_s``
    +-- BackendUnavailable (503 unavailable)        no backend (or store) can serve right now
    +-- EmbeddingsConnectionError (0 connection)    client side: no answer came (refused, dropped)
        +-- EmbeddingsTimeout (0 timeout)           client side: no answer within the client's timeout

Retries (the client's policy, read from the classes; for an answer, from the class its status
names): a ``retryable`` error is sent again for any call when the server surely did not act on the
request (``acted_on`` false: a 429, a refused connection), and only for an idempotent call when it
may have (a 503, a dropped connection).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Literal

Scope = Literal["any", "body", "collection", "token", "sparse"]


class EmbeddingsError(Exception):
    """Base of every error the service reports to callers."""

    status: int = 500
    error_type: str = "internal"
    description: str = "a bug: quote the request id"  # what the OpenAPI document says of this status
    retryable: bool = False  # a client may send the same request again
    acted_on: bool = True  # the server may have acted on the request: a retry is safe only for an idempotent call
    retry_after: int | None = None  # seconds the Retry-After header says when the error names none; None: no header
    scope: Scope = "any"  # which requests can get it: any, one with a body, one on a stored collection, one that
    # takes a token (``access.py``), one that needs the sparse model

    def __init__(self, message: str, *, field: str | None = None, limit: Any = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """The JSON body sent to the caller (plain, orjson-serialisable values only)."""
        body: dict[str, Any] = {"error_type": self.error_type, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.limit is not None:
            body["limit"] = self.limit
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        """The HTTP headers the answer carries besides its body (``Retry-After`` where the class has one)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(self.extra.get("retry_after_s", self.retry_after))}

    @classmethod
    def from_body(cls, status: int, body: Any) -> "EmbeddingsError":
        """Rebuild the matching subclass from a response body (as sent by ``to_body``)."""
        detail = body.get("detail", body) if isinstance(body, dict) else body
        if not isinstance(detail, dict):
            err = for_status(status)(str(detail))
            err.status = status
            return err
        kind = _BY_TYPE.get(detail.get("error_type", ""), for_status(status))
        extra = {k: v for k, v in detail.items() if k not in ("error_type", "message", "field", "limit")}
        err = kind(str(detail.get("message", "")), field=detail.get("field"), limit=detail.get("limit"), **extra)
        err.status = status
        return err

    @property
    def server_side(self) -> bool:
        """Whether the service, not the request, failed (a 5xx)."""
        return self.status >= 500

    def __str__(self) -> str:
        return self.message


class InvalidInput(EmbeddingsError):
    """The request broke a rule: a limit, a type, an unknown option.

    The engine names an offending item of a list by its position (``for_item``); the dialect that
    knows which request field the list came from names the field (``naming``).
    """

    status = 422
    error_type = "invalid_input"
    description = "a field breaks a rule (the body names the field and the limit)"
    scope = "body"

    def __init__(self, message: str, *, field: str | None = None, limit: Any = None, **extra: Any) -> None:
        super().__init__(message, field=field, limit=limit, **extra)
        self.index: int | None = None  # the item's position in the list the engine was given
        self._item_detail = message

    @classmethod
    def for_item(cls, index: int, detail: str, *, limit: Any = None, **extra: Any) -> "InvalidInput":
        """An error about item ``index`` of a list: "text 3 has 300 tokens; ..." until named."""
        err = cls(f"text {index} {detail}", limit=limit, **extra)
        err.index, err._item_detail = index, detail
        return err

    def named(self, name: str) -> "InvalidInput":
        """This error with the request field its item came from: ``name[index]``."""
        if self.index is not None and self.field is None:
            self.field = f"{name}[{self.index}]"
            self.message = f"{self.field} {self._item_detail}"
            self.args = (self.message,)
        return self


class MalformedRequest(InvalidInput):
    """The body cannot be read as JSON within the limits (syntax, nesting depth, number length)."""

    status = 400
    error_type = "malformed_request"
    description = "the body is not JSON within the limits, or (OpenAI, TEI's Empty) the request is invalid"


class PayloadTooLarge(InvalidInput):
    """The body is larger than the service accepts."""

    status = 413
    error_type = "payload_too_large"
    description = "the body is over the size limit"


class UnsupportedMediaType(InvalidInput):
    """The body is not declared as JSON."""

    status = 415
    error_type = "unsupported_media_type"
    description = "local server only: the body is not application/json"


class Unauthorized(EmbeddingsError):
    """The route needs a store token and none came, or one that is not configured (``access.py``).

    The message names the scope the route needs, never the token presented.
    """

    status = 401
    error_type = "unauthorized"
    description = "the route needs a store token (the body's `token` field) and none, or an unknown one, came"
    scope = "token"


class Forbidden(EmbeddingsError):
    """The caller may not do this: a store token whose scope is too small, or (local server) a Host
    that is not a loopback name."""

    status = 403
    error_type = "forbidden"
    description = "a store token whose scope is too small; on the local server, a Host that is not a loopback name"


class MethodNotAllowed(EmbeddingsError):
    """The route exists but not for this method."""

    status = 405
    error_type = "method_not_allowed"
    description = "the route does not answer this method"

    def headers(self) -> dict[str, str]:
        """``Allow``: the methods the route answers (``extra["allow"]``), when known."""
        headers = super().headers()
        if self.extra.get("allow"):
            headers["Allow"] = ", ".join(self.extra["allow"])
        return headers


class RequestTimeout(EmbeddingsError):
    """The request body did not arrive within the time allowed."""

    status = 408
    error_type = "request_timeout"
    description = "the body did not arrive in time"
    scope = "body"


class NotFound(EmbeddingsError):
    """A named thing (route, collection, record) does not exist."""

    status = 404
    error_type = "not_found"
    description = "no such route, collection or record"


class Conflict(EmbeddingsError):
    """The request contradicts stored state (another model or dimension in a collection)."""

    status = 409
    error_type = "conflict"
    description = "a collection built with another model or dimension"
    scope = "collection"


class NotConfigured(EmbeddingsError):
    """The request needs a model this deployment has not configured (``setting``: the variable
    that would configure it). 424, as TEI answers a route its model cannot serve."""

    status = 424
    error_type = "not_configured"
    description = "the route needs a model this deployment has not configured (the body names the setting)"
    scope = "sparse"


class Overloaded(EmbeddingsError):
    """Too much work is waiting; the caller should retry after a short pause (``retry_after_s``)."""

    status = 429
    error_type = "overloaded"
    description = "overloaded: retry after the Retry-After header's seconds"
    retryable = True
    acted_on = False  # refused before any work: safe to send again, idempotent or not
    retry_after = 1
    scope = "body"  # refused once the body has arrived, before it is parsed


class BackendUnavailable(EmbeddingsError):
    """No backend or store can serve the request right now."""

    status = 503
    error_type = "unavailable"
    description = "no backend could answer in time"
    retryable = True
    retry_after = 1


class EmbeddingsConnectionError(EmbeddingsError):
    """The server could not be reached or dropped the connection (after retries). ``status`` is 0.

    Raised by the client only (the service never answers it). ``acted_on`` is false on an instance
    whose connection was refused, so even a non-idempotent call is sent again.
    """

    status = 0
    error_type = "connection"
    description = "no answer: the server could not be reached or dropped the connection"
    retryable = True


class EmbeddingsTimeout(EmbeddingsConnectionError):
    """No answer within the client's ``timeout`` (not retried: the server may still be working)."""

    error_type = "timeout"
    description = "no answer within the client's timeout"
    retryable = False


@contextmanager
def naming(name: str) -> Iterator[None]:
    """Name the request field (``name``) of any item error raised inside (see ``InvalidInput.named``)."""
    try:
        yield
    except InvalidInput as err:
        raise err.named(name) from None


def _subclasses(cls: type[EmbeddingsError]) -> list[type[EmbeddingsError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def bad_request_status(err: EmbeddingsError) -> int:
    """The status for APIs that answer every invalid request 400 (OpenAI's, Cohere's): an
    ``InvalidInput`` of the generic 422 is answered as a ``MalformedRequest``'s status."""
    return MalformedRequest.status if type(err) is InvalidInput else err.status


def for_status(status: int) -> type[EmbeddingsError]:
    """The class the service answers ``status`` with (``EmbeddingsError`` for a status outside the tree)."""
    return _BY_STATUS.get(status, EmbeddingsError)


# what the service can answer: the client-side connection errors are never sent
ERROR_CLASSES: tuple[type[EmbeddingsError], ...] = tuple(
    c for c in _subclasses(EmbeddingsError) if not issubclass(c, EmbeddingsConnectionError))
_BY_TYPE = {c.error_type: c for c in ERROR_CLASSES}
_BY_STATUS = {c.status: c for c in ERROR_CLASSES}

"""The service's error tree: every failure a caller can see, with its HTTP status, once.

``EmbeddingsError`` subclasses carry ``status`` and ``error_type``; ``to_body()`` is what the
HTTP layer sends and ``from_body()`` is how the client rebuilds the same class. Nothing else in
the project knows a status code.

    EmbeddingsError (500 internal)
    +-- InvalidInput (422 invalid_input)           the request broke a rule; names the field and limit
    |   +-- MalformedRequest (400 malformed_request)  the body is not JSON, too deep, a number too long
    |   +-- PayloadTooLarge (413 payload_too_large)   the body is over EMBEDDINGS_MAX_BODY_BYTES
    |   +-- UnsupportedMediaType (415 unsupported_media_type)  a local-server POST that is not JSON
    +-- Forbidden (403 forbidden)                   a local-server request for a host that is not loopback
    +-- NotFound (404 not_found)                    a route, collection or record that does not exist
    +-- MethodNotAllowed (405 method_not_allowed)   a route asked with the wrong method
    +-- RequestTimeout (408 request_timeout)        the body did not arrive in time
    +-- Conflict (409 conflict)                     e.g. vectors of another model or dimension
    +-- Overloaded (429 overloaded)                 queue full; retry after ``retry_after_s``
    +-- BackendUnavailable (503 unavailable)        no backend (or store) can serve right now
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


class EmbeddingsError(Exception):
    """Base of every error the service reports to callers."""

    status: int = 500
    error_type: str = "internal"

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

    @classmethod
    def from_body(cls, status: int, body: Any) -> "EmbeddingsError":
        """Rebuild the matching subclass from a response body (as sent by ``to_body``)."""
        detail = body.get("detail", body) if isinstance(body, dict) else body
        if not isinstance(detail, dict):
            err = _BY_STATUS.get(status, EmbeddingsError)(str(detail))
            err.status = status
            return err
        kind = _BY_TYPE.get(detail.get("error_type", ""), _BY_STATUS.get(status, EmbeddingsError))
        extra = {k: v for k, v in detail.items() if k not in ("error_type", "message", "field", "limit")}
        err = kind(str(detail.get("message", "")), field=detail.get("field"), limit=detail.get("limit"), **extra)
        err.status = status
        return err

    def __str__(self) -> str:
        return self.message


class InvalidInput(EmbeddingsError):
    """The request broke a rule: a limit, a type, an unknown option.

    The engine names an offending item of a list by its position (``for_item``); the dialect that
    knows which request field the list came from names the field (``naming``).
    """

    status = 422
    error_type = "invalid_input"

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


class PayloadTooLarge(InvalidInput):
    """The body is larger than the service accepts."""

    status = 413
    error_type = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    """The body is not declared as JSON."""

    status = 415
    error_type = "unsupported_media_type"


class Forbidden(EmbeddingsError):
    """The request is refused whatever its body (e.g. a non-loopback Host on the local server)."""

    status = 403
    error_type = "forbidden"


class MethodNotAllowed(EmbeddingsError):
    """The route exists but not for this method."""

    status = 405
    error_type = "method_not_allowed"


class RequestTimeout(EmbeddingsError):
    """The request body did not arrive within the time allowed."""

    status = 408
    error_type = "request_timeout"


class NotFound(EmbeddingsError):
    """A named thing (route, collection, record) does not exist."""

    status = 404
    error_type = "not_found"


class Conflict(EmbeddingsError):
    """The request contradicts stored state (another model or dimension in a collection)."""

    status = 409
    error_type = "conflict"


class Overloaded(EmbeddingsError):
    """Too much work is waiting; the caller should retry after a short pause."""

    status = 429
    error_type = "overloaded"


class BackendUnavailable(EmbeddingsError):
    """No backend or store can serve the request right now."""

    status = 503
    error_type = "unavailable"


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


_BY_TYPE = {c.error_type: c for c in _subclasses(EmbeddingsError)}
_BY_STATUS = {c.status: c for c in _subclasses(EmbeddingsError)}
ERROR_CLASSES: tuple[type[EmbeddingsError], ...] = tuple(_subclasses(EmbeddingsError))

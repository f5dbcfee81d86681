"""The service's OpenAPI 3.1 document, built from the route table the chute file fills in.

Every route (the native API, ``/v1/*``, ``/tei/*``, operations) appears with its request and
response schemas (the pydantic models of ``schemas.py``, as JSON Schema 2020-12 under
``components/schemas``) and the error answers its dialect gives, in that dialect's shape. The
chute serves it at ``GET /openapi`` (and, locally, FastAPI's ``/openapi.json`` and ``/docs``);
``docs/openapi.json`` is a committed copy that a test keeps equal.

    python -m chutes_embeddings.http.openapi > docs/openapi.json     # regenerate the committed copy
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    400: "the body is not JSON within the limits, or (OpenAI, TEI's Empty) the request is invalid",
    403: "local server only: a Host that is not a loopback name",
    404: "no such route, collection or record",
    405: "the route does not answer this method",
    408: "the body did not arrive in time",
    409: "a collection built with another model or dimension",
    413: "the body is over the size limit",
    415: "local server only: the body is not application/json",
    422: "a field breaks a rule (the body names the field and the limit)",
    429: "overloaded: retry after the Retry-After header's seconds",
    500: "a bug: quote the request id",
    503: "no backend could answer in time",
}
NO_BODY_STATUSES = (400, 408, 413, 415, 422, 429)  # answers to a body: not for GET routes


def build_openapi(table: Any, title: str = "chutes-embeddings") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``table`` (a ``boundary.RouteTable``).

    Args:
        table: the routes, with their request/response models and dialects, and each dialect's
            error model (``table.error_models``).
        title: the document's title.
    """
    models = {m for r in table.routes for m in (r.request, r.response) if m is not None}
    models |= set(table.error_models.values())
    keyed = sorted(models, key=lambda m: m.__name__)
    refs, schemas = models_json_schema([(m, "validation") for m in keyed], ref_template=REF)
    components = schemas.get("$defs", {})
    paths: dict[str, Any] = {}
    for route in table.routes:
        error_ref = refs[(table.error_models[route.dialect.name], "validation")]
        responses: dict[str, Any] = {"200": _ok(route, refs)}
        for status in route.dialect.ERROR_STATUSES:
            if route.method == "GET" and status in NO_BODY_STATUSES:
                continue
            responses[str(status)] = {"description": STATUS_TEXT[status],
                                      "content": {"application/json": {"schema": error_ref}}}
        operation: dict[str, Any] = {
            "operationId": route.internal_path.strip("/").replace("/", "_") or "root",
            "summary": route.summary.strip().splitlines()[0] if route.summary else route.path,
            "tags": [route.dialect.name],
            "responses": responses,
        }
        if route.request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(route.request, "validation")]}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__,
                 "description": "Text embeddings: the service's own API, OpenAI's embeddings API under /v1, and "
                                "text-embeddings-inference's API under /tei. Errors use each API's own shape."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.items()))},
    }


def _ok(route: Any, refs: dict[Any, Any]) -> dict[str, Any]:
    if route.response is None:
        return {"description": "OK", "content": {route.media_type.split(";")[0]: {"schema": {"type": "string"}}}}
    return {"description": "OK", "content": {"application/json": {"schema": refs[(route.response, "validation")]}}}


def main() -> None:
    """Print the document of the chute in ``my_embeddings`` (run from the project root)."""
    import os

    os.environ.setdefault("CHUTES_EXECUTION_CONTEXT", "REMOTE")
    import my_embeddings

    print(json.dumps(build_openapi(my_embeddings.ROUTES), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()

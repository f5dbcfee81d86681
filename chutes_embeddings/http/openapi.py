"""The service's OpenAPI 3.1 document, built from the route table the chute file fills in.

Every route (the native API, ``/v1/*``, ``/tei/*``, operations) appears with its request and
response schemas (the pydantic models of ``schemas``, as JSON Schema 2020-12 under
``components/schemas``) and the error answers its dialect gives, in that dialect's shape. The
error answers come from the error tree (``errors.py``): every class that can reach the route (its
``scope``), at the status the dialect renders it with, described by that status's class. The
chute serves it at ``GET /openapi`` (and, locally, FastAPI's ``/openapi.json`` and ``/docs``);
``docs/openapi.json`` is a committed copy that a test keeps equal.

    python -m chutes_embeddings.tools.openapi_doc > docs/openapi.json     # regenerate the committed copy
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__
from ..engine.results import SPARSE
from ..errors import ERROR_CLASSES, EmbeddingsError, for_status

REF = "#/components/schemas/{model}"
COLLECTION_ROUTES = "/store/"  # the routes on stored collections: the only ones errors of scope "collection" reach


@dataclass(frozen=True)
class ServedModel:
    """What bounds requests once a model is loaded (the request models state only the service-wide
    bounds: the model is chosen at start-up): the served document states these too."""

    dimension: int  # the maximum of every ``dimensions``
    vocab_size: int  # token ids (TEI's /decode) are below it
    prompt_names: tuple[str, ...] = ()  # every ``prompt_name`` is one of them
    max_window_overlap: int | None = None  # the maximum of every ``window_overlap`` (None: unbounded)

    @classmethod
    def of(cls, engine: Any) -> "ServedModel":
        """The bounds of ``engine``'s embedding model."""
        return cls(engine.dimension, engine.vocab_size, tuple(engine.prompts), engine.embedder.max_window_overlap)


def build_openapi(table: Any, title: str = "chutes-embeddings", served: ServedModel | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``table`` (a ``boundary.RouteTable``).

    Args:
        table: the routes, with their request/response models and dialects, and each dialect's
            error model (``table.error_models``).
        title: the document's title.
        served: the loaded model's bounds, stated on the request fields they bound (None: the
            document of the code alone, as committed in docs/openapi.json).
    """
    models = {m for r in table.routes for m in (r.request, r.response) if m is not None}
    models |= set(table.error_models.values())
    keyed = sorted(models, key=lambda m: m.__name__)
    refs, schemas = models_json_schema([(m, "validation") for m in keyed], ref_template=REF)
    components = schemas.get("$defs", {})
    if served is not None:  # every component (the nested request models too); responses have no such fields
        _state_bounds(components, served)
    paths: dict[str, Any] = {}
    for route in table.routes:
        error_ref = refs[(table.error_models[route.dialect.name], "validation")]
        responses: dict[str, Any] = {"200": _ok(route, refs)}
        for status in error_statuses(route):
            responses[str(status)] = {"description": for_status(status).description,
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


def error_statuses(route: Any) -> list[int]:
    """The statuses ``route`` can answer besides 200, ascending: its dialect's status for every error
    class that can reach it (``scope``), so the document follows the error tree and cannot drift from it."""
    return sorted({route.dialect.render_error(cls("x"))[0] for cls in ERROR_CLASSES if _reaches(cls, route)})


def _reaches(cls: type[EmbeddingsError], route: Any) -> bool:
    if cls.scope == "body":
        return route.request is not None
    if cls.scope == "collection":
        return route.path.startswith(COLLECTION_ROUTES)
    if cls.scope == "token":
        return route.access is not None
    if cls.scope == "sparse":
        return route.uses_model == SPARSE
    return True


def _state_bounds(schema: Any, served: ServedModel) -> None:
    """State ``served``'s bounds on the properties they bound, wherever they are in ``schema``."""
    if isinstance(schema, dict):
        properties = schema.get("properties", {})
        for name in ("dimensions", "output_dimension"):  # the native and OpenAI/TEI name, and Cohere's
            if name in properties:
                _set_integer_maximum(properties[name], served.dimension)
        if "ids" in properties:  # token ids (TEI's /decode); record ids are strings, left as they are
            _set_integer_maximum(properties["ids"], served.vocab_size - 1)
        if "window_overlap" in properties and served.max_window_overlap is not None:
            _set_integer_maximum(properties["window_overlap"], served.max_window_overlap)
        if "prompt_name" in properties:
            properties["prompt_name"] = _prompt_names(properties["prompt_name"], served.prompt_names)
        for value in schema.values():
            _state_bounds(value, served)
    elif isinstance(schema, list):
        for value in schema:
            _state_bounds(value, served)


def _prompt_names(schema: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A ``prompt_name``'s schema for a model with prompts ``names``: one of them or null (only
    null when it has none)."""
    described = {k: schema[k] for k in ("title", "description", "default") if k in schema}
    if not names:
        return {**described, "type": "null"}
    return {**described, "anyOf": [{"type": "string", "enum": list(names)}, {"type": "null"}]}


def _set_integer_maximum(schema: Any, maximum: int) -> None:
    """Lower the ``maximum`` of every integer form in ``schema`` (nested arrays included) to ``maximum``."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            schema["maximum"] = min(maximum, schema.get("maximum", maximum))
        for value in schema.values():
            _set_integer_maximum(value, maximum)
    elif isinstance(schema, list):
        for value in schema:
            _set_integer_maximum(value, maximum)


def _ok(route: Any, refs: dict[Any, Any]) -> dict[str, Any]:
    if route.response is None:
        media = route.media_type.split(";")[0]
        return {"description": "OK", "content": {media: {"schema": {
            "type": "object" if media == "application/json" else "string"}}}}
    return {"description": "OK", "content": {"application/json": {"schema": refs[(route.response, "validation")]}}}

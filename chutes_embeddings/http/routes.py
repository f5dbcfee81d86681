"""The chute's route table: every declared route, its dialect and the models it queues work for.

The chute file fills it in as it declares cords; the boundary (dialect of an error, early
admission), the OpenAPI builder and the metrics (route labels) read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from .dialects import Dialect, native

TEI_PREFIX = "/tei"  # TEI's routes; ``/tei/{model}/...``: the same for another served model


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
    uses_model: (
        str | None
    )  # the model it queues work for ("embedder", "reranker"): refused early while that queue is full
    media_type: str
    access: str | None = None  # what it needs of a caller's token (``access.py``); None: it takes none


@dataclass
class RouteTable:
    """Every route of the chute, filled in by the chute file as it declares cords."""

    error_models: dict[str, Any] = dataclass_field(default_factory=dict)  # dialect name -> its error body model
    routes: list[Route] = dataclass_field(default_factory=list)
    dialects: dict[str, Dialect] = dataclass_field(default_factory=dict)
    model_paths: dict[str, str] = dataclass_field(default_factory=dict)  # path -> the model it queues work for
    labels: dict[str, str] = dataclass_field(default_factory=dict)  # either path -> public path
    token_gets: set[str] = dataclass_field(default_factory=set)  # either path of a GET that takes a token

    def add(self, method: str, path: str, internal_path: str, summary: str, request: Any, response: Any,
            dialect: Dialect, uses_model: str | None, media_type: str, access: str | None = None) -> None:
        """Record a route under its public and internal paths."""
        self.routes.append(Route(method, path, internal_path, summary, request, response, dialect, uses_model,
                                 media_type, access))
        for key in (path, internal_path):
            if method == "GET" and access:
                self.token_gets.add(key)
            self.dialects[key] = dialect
            self.labels[key] = path
            if uses_model:
                self.model_paths[key] = uses_model

    def dialect(self, path: str) -> Dialect:
        """The dialect ``path`` speaks: its route's; for a path no route declared (its 404), the
        dialect that declares the most routes under the same first segment (``/v1/...``: OpenAI's,
        ``/v2/...``: Cohere's, ``/tei/...``: TEI's), so each SDK can read the error; else the
        native one."""
        found = self.dialects.get(path)
        if found is not None:
            return found
        segment = _first_segment(path)
        owners = Counter(r.dialect for r in self.routes if _first_segment(r.path) == segment and "/" in r.path[1:])
        return owners.most_common(1)[0][0] if owners else native

    def tei_model_route(self, method: str, path: str) -> tuple[str, str] | None:
        """A TEI route under a model's prefix, ``/tei/{model}/embed`` (``/tei/{model}``: TEI's root),
        as ``(/tei/embed, model)``; None for any other path (a declared one included)."""
        if method != "POST" or not path.startswith(TEI_PREFIX + "/") or path in self.dialects:
            return None
        tei = [r.path[len(TEI_PREFIX):] for r in self.routes
               if r.method == "POST" and (r.path + "/").startswith(TEI_PREFIX + "/")]
        suffixes = sorted(tei, key=len, reverse=True)
        for suffix in suffixes:
            model = path[len(TEI_PREFIX) + 1 : len(path) - len(suffix)]
            if path.endswith(suffix) and model and not model.endswith("/"):
                return TEI_PREFIX + suffix, model
        return None

    def route_label(self, path: str) -> str:
        """``path`` as a metrics label: a declared public path, else ``other`` (bounded cardinality)."""
        return self.labels.get(path, "other")


def _first_segment(path: str) -> str:
    """``/v1/embeddings`` -> ``v1``."""
    return path.lstrip("/").split("/", 1)[0]

"""The served models by name: which model of a kind a request's ``model`` picks, in one place.

Each configured model (``settings.ModelSpec``) is its own service: an embedding pipeline, a
reranker or a sparse pipeline, with its own batcher, cache and (with the TEI binary) supervised TEI,
all built by the backend factory (``engine.startup``). A model that failed to load is kept here with
its error, so its requests get 503 naming it and ``/health`` lists it, while the others serve.

How a name resolves (``ModelRegistry.resolve``), for a route that wants a kind:

1. None (the request names no model): the kind's default, its first configured model;
2. a model's served name or alias: that model; one of another kind is refused (422), a failed one
   answers 503 naming it;
3. a loose name (the configured id or folder, the served name's last part: ``all-MiniLM-L6-v2``),
   when exactly one model has it;
4. any other name: the model of that kind with the alias ``*``, and a kind's only model has it
   implicitly, as TEI ignores ``model`` (clients send their own defaults, ``text-embedding-3-small``,
   ``rerank-v3.5``); with several models of the kind and no ``*``, 404 listing the served ones.
   Never a silent fallback to another model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BackendUnavailable, InvalidInput, NotFound
from ..settings import ModelSpec

ANY_NAME = "*"  # the alias of a model that answers names no model claims


@dataclass
class ModelEntry:
    """One configured model: its spec, its service (None when it failed to load) and why it failed."""

    spec: ModelSpec
    service: Any = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.served_name

    @property
    def kind(self) -> str:
        return self.spec.kind


class ModelRegistry:
    """The configured models, each kind's default first (see module docstring)."""

    def __init__(self, models: list[ModelEntry]) -> None:
        self.models = list(models)
        self._exact: dict[str, ModelEntry] = {}
        for model in self.models:
            for name in model.spec.names():
                self._exact.setdefault(name, model)
        loose: dict[str, list[ModelEntry]] = {}
        for model in self.models:
            for name in model.spec.loose_names():
                if name not in self._exact:
                    loose.setdefault(name, []).append(model)
        self._loose = {name: found[0] for name, found in loose.items() if len(found) == 1}

    @classmethod
    def of_services(cls, **services: Any) -> "ModelRegistry":
        """A registry of one model per kind (``embedder=``, ``reranker=``, ``sparse=``; None: none),
        each named by its ``model_id``: what an engine built around given services serves."""
        return cls([ModelEntry(ModelSpec(s.model_id, kind, name=s.model_id), s)
                    for kind, s in services.items() if s is not None])

    def of_kind(self, kind: str) -> list[ModelEntry]:
        """The models of ``kind``, its default first."""
        return [m for m in self.models if m.kind == kind]

    def default(self, kind: str) -> ModelEntry | None:
        """The kind's default model (None: none configured)."""
        return next(iter(self.of_kind(kind)), None)

    def find(self, name: str) -> ModelEntry | None:
        """The model a name picks, of any kind (None: no model has that name)."""
        return self._exact.get(name) or self._loose.get(name)

    def resolve(self, kind: str, name: str | None, route: str = "this route") -> ModelEntry:
        """The model of ``kind`` that ``name`` picks (see module docstring).

        Raises:
            InvalidInput: the name is a model of another kind (names the field ``model``).
            NotFound: no model of the kind has that name, and none answers any name.
            BackendUnavailable: the named model failed to load (names it and why).
        """
        of_kind = self.of_kind(kind)
        served = [m.name for m in of_kind]
        if name is None:
            found = of_kind[0] if of_kind else None
        else:
            found = self.find(name)
            if found is not None and found.kind != kind:
                raise InvalidInput(f"model {name!r} is a {found.kind}; {route} wants a {kind}: one of {served}",
                                   field="model", limit=served)
            if found is None:
                found = next((m for m in of_kind if ANY_NAME in m.spec.aliases), None)
                if found is None and len(of_kind) == 1:
                    found = of_kind[0]
        if found is None:
            raise NotFound(f"the model {name!r} is not served here; the {kind}s served are {served}",
                           field="model", limit=served)
        if found.service is None:
            raise BackendUnavailable(f"the {kind} {found.name!r} is not serving: it failed to load ({found.error}); "
                                     "the other models serve", field="model")
        return found

    def close(self) -> None:
        """Close every model's service."""
        for model in self.models:
            if model.service is not None:
                model.service.close()

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

import copy
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from ..settings import ModelSpec
from .reranking import BiEncoderReranker
from .results import EMBEDDER, RERANKER, SPARSE, ModelReport

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
        self._exact: dict[str, list[ModelEntry]] = {}  # a name is unique within a kind (settings.model_specs)
        for model in self.models:
            for name in model.spec.names():
                self._exact.setdefault(name, []).append(model)
        loose: dict[str, list[ModelEntry]] = {}
        for model in self.models:
            for name in model.spec.loose_names():
                if name not in self._exact:
                    loose.setdefault(name, []).append(model)
        # a loose name two models of one kind share picks neither of them
        self._loose = {name: [m for m in found if sum(o.kind == m.kind for o in found) == 1]
                       for name, found in loose.items()}

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

    def find(self, name: str, kind: str | None = None) -> ModelEntry | None:
        """The model a name picks: of ``kind`` when one of that kind has it, else of any kind (None: no
        model has that name)."""
        found = self._exact.get(name) or self._loose.get(name) or []
        return next((m for m in found if m.kind == kind), found[0] if found else None)

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
            found = self.find(name, kind)
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

    def reports(self) -> list[ModelReport]:
        """Every model as /health, /info and /v1/models list it (``state`` None: it failed to load)."""
        defaults = [self.default(kind) for kind in (EMBEDDER, RERANKER, SPARSE)]
        return [ModelReport(m.name, m.kind, m in defaults, m.spec.names(),
                            m.service.describe() if m.service is not None else None, m.error,
                            m.service.dimension if m.service is not None and m.kind == EMBEDDER else None)
                for m in self.models]

    def problems(self, skip: Sequence[Any]) -> list[tuple[str, str]]:
        """``(status, reason)`` for each model that cannot serve fully: failed to load, its TEI down
        (``degraded``), its queue full (``overloaded``); ``skip``: services the caller reports itself."""
        found: list[tuple[str, str]] = []
        for model in self.models:
            if model.service is None:
                found.append(("degraded", f"the {model.kind} {model.name!r} failed to load ({model.error}): its "
                                          "requests get 503; the other models serve"))
                continue
            if any(model.service is s for s in skip):
                continue
            state = model.service.describe()
            if state.tei_serving is False:
                found.append(("degraded", f"the TEI of the {model.kind} {model.name!r} is not serving; its local "
                                          "model answers"))
            if state.batching is not None and state.batching.overloaded:
                found.append(("overloaded", f"the queue of the {model.kind} {model.name!r} is full: its new work "
                                            "is refused with 429"))
        return found

    def close(self) -> None:
        """Close every model's service."""
        for model in self.models:
            if model.service is not None:
                model.service.close()


def choose(engine: Any, kind: str, name: str | None, route: str = "this route") -> Any:
    """``engine`` (an ``core.Engine``) with the model of ``kind`` that ``name`` picks (None: the kind's
    default, ``engine`` itself); the other kinds' models stay the defaults. A cheap view: the
    models, their batchers and caches are shared, and every verb and property (``dimension``,
    ``prompts``, ``model_id``) answers for the chosen model.

    Without a (loaded) cross-encoder, a rerank that names an embedder is that embedder's cosine (the
    bi-encoder stand-in over it), and any other name the default stand-in; an embedder view's
    stand-in uses that embedder.

    Raises:
        InvalidInput: the name is a model of another kind.
        NotFound: no model of the kind has that name (the message lists the served ones).
        BackendUnavailable: the named model failed to load.
        NotConfigured: a sparse model named where none is configured.
    """
    if name is None:
        return engine
    models: ModelRegistry = engine.models
    if kind == RERANKER and isinstance(engine.reranker, BiEncoderReranker):  # no cross-encoder serves
        found = models.find(name, EMBEDDER)
        if found is not None and found.kind == EMBEDDER:  # that embedder's cosine
            return _view(engine, reranker=BiEncoderReranker(models.resolve(EMBEDDER, name, route).service))
        if (found is None or found.service is None) and len(models.of_kind(RERANKER)) <= 1:
            return engine  # the stand-in answers any name, as a kind's only model does
    if kind == SPARSE and engine.sparse is None:
        engine.embed_sparse([])  # raises NotConfigured naming the setting
    service = models.resolve(kind, name, route).service
    if kind == EMBEDDER:
        if service is engine.embedder:
            return engine
        stand_in = isinstance(engine.reranker, BiEncoderReranker)
        return _view(engine, embedder=service, reranker=BiEncoderReranker(service) if stand_in else engine.reranker)
    current = engine.reranker if kind == RERANKER else engine.sparse
    return engine if service is current else _view(engine, **{kind: service})


def for_collection(engine: Any, collection: str, stored: str, requested: str | None) -> Any:
    """The engine that searches a stored collection of model ``stored``: the embedder the request
    names (``requested``), which must be that model; else the served embedder of that name; else
    ``engine`` (whose search then says the collection is another model's).

    Raises:
        Conflict: ``requested`` names another model than the collection's.
        NotFound, InvalidInput, BackendUnavailable: as ``choose``.
    """
    if requested is not None:
        chosen = choose(engine, EMBEDDER, requested, "POST /store/search")
        if chosen.model_id != stored:
            raise Conflict(f"collection {collection!r} holds vectors of {stored!r}; the request names "
                           f"{chosen.model_id!r}: search it with its own model (or name none)", field="model",
                           limit=stored)
        return chosen
    found = engine.models.find(stored, EMBEDDER)
    if found is None or found.kind != EMBEDDER or found.service is None:
        return engine
    return choose(engine, EMBEDDER, stored)


def _view(engine: Any, **services: Any) -> Any:
    view = copy.copy(engine)
    for attr, service in services.items():
        setattr(view, attr, service)
    view._admit()
    return view

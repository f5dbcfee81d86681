"""The one path every text takes to become a vector: cache, admission, tokenising, batching.

``EmbeddingPipeline`` owns the cache, the batcher and the tokenizer over one ``Embedder``; the
``Engine`` composes it with the reranker. Synchronous and thread-safe: cords call it from many
worker threads, and one forward pass serves many callers.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from typing import Any, Sequence

import numpy as np

from ..backends.protocols import TRUNCATION_DIRECTIONS, BatchingProfile, Embedder, EmbedWork, Tokenizer
from ..errors import BackendUnavailable, EmbeddingsError, InvalidInput
from ..settings import Settings
from .batcher import Admission, Batcher, estimate_tokens
from .cache import EmbeddingCache
from .caller import current_scope
from .results import EMBEDDER, Embedded, EmbedOptions, ModelState
from .vectors import POOLINGS
from .vectors import normalize as l2_normalize


def embed_runner(backend: Embedder) -> Any:
    """The batcher's run function for ``backend``: one ``Embedder.embed`` call per batch."""

    def run(work: list[EmbedWork]) -> np.ndarray:
        return backend.embed([w.text for w in work], [w.pooling for w in work], [w.truncation for w in work],
                             [w.ids for w in work])

    return run


def wait_for(futures: list[cf.Future], timeout_s: float) -> list[Any]:
    """The futures' results, in order, within ``timeout_s`` (``BackendUnavailable`` after it).

    The futures belong to the current caller's scope (dropped if the caller goes away); on any
    failure the others are cancelled, so nobody computes what nobody will read.
    """
    scope = current_scope()
    if scope is not None:
        scope.track(futures)
    deadline = time.monotonic() + timeout_s
    try:
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
    except cf.TimeoutError:
        for f in futures:
            f.cancel()
        raise BackendUnavailable(f"no answer from the model within {timeout_s:.0f} s; retry later") from None
    except (EmbeddingsError, cf.CancelledError):
        for f in futures:
            f.cancel()
        raise


def check_direction(direction: str) -> None:
    """Refuse a truncation direction that is not ``right`` or ``left``."""
    if direction not in TRUNCATION_DIRECTIONS:
        raise InvalidInput(f"truncation_direction {direction!r} is not one of {list(TRUNCATION_DIRECTIONS)}",
                           field="truncation_direction", limit=list(TRUNCATION_DIRECTIONS))


def _first_positions(texts: Sequence[str]) -> dict[str, int]:
    """Each distinct text's first index (what an error about it names)."""
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    return first


class EmbeddingPipeline:
    """Texts in, vectors out, for one embedding model (see module docstring).

    Args:
        settings: the service settings.
        embedder: what serves forward passes (local, TEI, or TEI with local fallback).
        tokenizer: the local model's tokenizer; it tokenises a text at most once, and only when
            its ids or its count are needed.
        profile: how to batch for what serves the model.
    """

    def __init__(self, settings: Settings, embedder: Embedder, tokenizer: Tokenizer,
                 profile: BatchingProfile | None = None) -> None:
        self.settings = settings
        self.backend = embedder
        self.tokenizer = tokenizer
        self.cache = EmbeddingCache(settings.cache_size)
        self.batcher = Batcher.for_service(
            embed_runner(embedder), settings, profile or BatchingProfile(),
            max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
            name="batcher", unit="texts",
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def dimension(self) -> int:
        return self.backend.dimension

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()

    def check_admission(self) -> None:
        """Raise ``Overloaded`` now if new texts would be refused (reserves nothing)."""
        self.batcher.check_admission()

    def describe(self) -> ModelState:
        """What serves this model now, and its batcher's state."""
        return ModelState(model=self.model_id, kind=EMBEDDER, backend=self.backend.kind,
                          runtime=self.backend.runtime, max_input_tokens=self.backend.max_input_tokens,
                          tei=self.backend.status(), batching=self.batcher.stats())

    def embed(self, texts: Sequence[str], options: EmbedOptions = EmbedOptions()) -> Embedded:
        """Embed texts (cache first, then shared forward passes), in input order.

        The steps, in this order: check the options; look each text up in the cache; admit the
        misses (``Overloaded`` at once when the queue is full, before any tokenising); tokenise
        once what must be (``_to_tokenize``); queue the misses, with their token ids, for shared
        forward passes; cut to ``dimensions``; normalise.

        Returns:
            (len(texts), dimensions or dimension) float32 vectors, and each text's token count as
            embedded (after any cut) when ``options.count_tokens``.

        Raises:
            InvalidInput: a bad option, or a text over the token limit with ``truncate`` False
                (``index``: its position in ``texts``).
            Overloaded: the batch queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        mode = self._check_options(options)
        keys = [(self.model_id, mode, options.truncation_direction, text) for text in texts]
        out, missing = self._lookup(keys, texts)
        counts: list[int] | None = None
        with self._admit(list(missing)) as admitted:
            to_tokenize = self._to_tokenize(texts, missing, options)
            ids, full = self.tokenizer.tokenize(to_tokenize, options.truncation_direction) if to_tokenize else ([], [])
            if not options.truncate:
                self._check_token_limit(to_tokenize, full, _first_positions(texts), options.truncation_direction)
            encoded = dict(zip(to_tokenize, ids))
            if options.count_tokens:
                counts = [len(encoded[text]) for text in texts]
            if missing:
                self._compute_misses(missing, encoded, mode, options, admitted, out)
        return Embedded(self._finish(out, options), counts)

    def _check_options(self, options: EmbedOptions) -> str:
        """The pooling mode to use; ``InvalidInput`` for an option out of range."""
        mode = options.pooling or self.backend.default_pooling
        if mode not in POOLINGS:
            raise InvalidInput(
                f"pooling {mode!r} is not one of {list(POOLINGS)}", field="pooling", limit=list(POOLINGS)
            )
        check_direction(options.truncation_direction)
        dims = options.dimensions
        if dims is not None and not 1 <= dims <= self.dimension:
            raise InvalidInput(f"dimensions must be 1..{self.dimension} (the model's dimension), got {dims}",
                               field="dimensions", limit=self.dimension)
        return mode

    def _lookup(
        self, keys: list[tuple[str, str, str, str]], texts: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, list[int]]]:
        """The cached vectors in place, and each missing text's positions."""
        found = self.cache.get_many(keys)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, (text, vec) in enumerate(zip(texts, found)):
            if vec is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = vec
        return out, missing

    def _to_tokenize(self, texts: Sequence[str], missing: dict[str, list[int]], options: EmbedOptions) -> list[str]:
        """Every distinct text when counting or with ``truncate=False`` (so a cached vector never
        answers an input over the limit); else the misses, when the backend takes token ids (TEI
        tokenises on its side, and its batches are costed by the length estimate)."""
        if options.count_tokens or not options.truncate:
            return list(dict.fromkeys(texts))
        return list(missing) if self.backend.takes_token_ids else []

    def _compute_misses(self, missing: dict[str, list[int]], encoded: dict[str, list[int]], mode: str,
                        options: EmbedOptions, admitted: Admission | None, out: np.ndarray) -> None:
        """Queue the misses for shared forward passes, cache their vectors and put them in place."""
        unique = list(missing)
        truncation = options.truncation_direction if options.truncate else None
        token_ids = [encoded.get(t) for t in unique]
        work = [EmbedWork(text, mode, truncation, ids) for text, ids in zip(unique, token_ids)]
        tokens = [len(ids) if ids is not None else self._estimate_tokens(text) for text, ids in zip(unique, token_ids)]
        futures = self.batcher.submit(work, tokens, options.max_batch, admitted)
        vectors = np.stack(wait_for(futures, self.settings.request_timeout_s))
        self.cache.put_many([(self.model_id, mode, options.truncation_direction, t) for t in unique], vectors)
        for text, row in zip(unique, vectors):
            out[missing[text]] = row

    @staticmethod
    def _finish(out: np.ndarray, options: EmbedOptions) -> np.ndarray:
        if options.dimensions is not None:
            out = np.ascontiguousarray(out[:, : options.dimensions])
        return l2_normalize(out) if options.normalize else out

    def _admit(self, texts: Sequence[str]) -> Any:
        """A place in the batch queue for these texts (``Overloaded`` now if there is none), sized
        before tokenising by the length estimate."""
        if not texts:
            return contextlib.nullcontext()
        return self.batcher.admit(len(texts), sum(self._estimate_tokens(t) for t in texts))

    def _estimate_tokens(self, text: str) -> int:
        return estimate_tokens(len(text), self.backend.max_input_tokens)

    def _check_token_limit(self, texts: list[str], counts: list[int], position: dict[str, int],
                           direction: str) -> None:
        limit = self.backend.max_input_tokens
        for text, n in zip(texts, counts):
            if n > limit:
                kept = "first" if direction == "right" else "last"
                raise InvalidInput.for_item(
                    position[text],
                    f"has {n} tokens; the model accepts at most {limit}. "
                    f"Send truncate=true to embed its {kept} tokens, or split the text.",
                    limit=limit, tokens=n)

    def embed_tokens(self, texts: Sequence[str], *, truncate: bool = True,
                     truncation_direction: str = "right") -> list[np.ndarray]:
        """Each text's token embeddings (not pooled, not normalised; TEI's ``/embed_all``).

        Not cached and not batched with other callers: one forward pass for this request, after
        the same admission and token-limit checks as every other embedding.
        """
        check_direction(truncation_direction)
        with self._admit(texts):
            ids, full = self.tokenizer.tokenize(texts, truncation_direction)  # once: the backend takes these ids
            if not truncate:
                self._check_token_limit(list(texts), full, _first_positions(texts), truncation_direction)
            return self.backend.embed_tokens(texts, truncation_direction if truncate else None, ids)

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[dict[str, Any]]]:
        """Each text's tokens (id, text, special, start, stop), as the model's tokenizer sees them."""
        return self.tokenizer.token_details(texts, add_special_tokens)

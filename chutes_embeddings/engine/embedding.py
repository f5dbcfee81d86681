"""The one path every text takes to become a vector: cache, admission, tokenising, batching.

``EmbeddingPipeline`` owns the cache, the batcher and the tokenizer over one backend; the
``Engine`` (the service's verbs) is built on it. Synchronous and thread-safe: cords call it from
many worker threads, and one forward pass serves many callers.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..backends import TRUNCATION_DIRECTIONS, Backend
from .batcher import Admission, Batcher
from .cache import EmbeddingCache
from .caller import current_scope
from ..errors import BackendUnavailable, EmbeddingsError, InvalidInput
from ..settings import Settings
from .vectors import POOLINGS, normalize as l2_normalize

CHARS_PER_TOKEN = 4  # admission's estimate of a text's cost before it is tokenised


class EmbedWork(NamedTuple):
    """One text queued for a forward pass: how to pool it, how it may be cut, its token ids."""

    text: str
    pooling: str
    truncation: str | None
    ids: Sequence[int] | None


def embed_runner(backend: Backend) -> Any:
    """The batcher's run function for ``backend``: one ``Backend.embed`` call per batch."""

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
    """Texts in, vectors out, for one model (see module docstring).

    Args:
        settings: the service settings.
        backend: what serves forward passes (local, TEI, or TEI with local fallback).
        tokenizer: the local model's tokenizer (``LoadedModel``: ``tokenize``, ``token_details``);
            it tokenises a text at most once, and only when its ids or its count are needed.
        batches_in_flight: forward passes the batcher runs at once (1 for a local model).
        batch_overhead_tokens: the cost of one more pass in padded tokens (default: the setting).
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        tokenizer: Any,
        batches_in_flight: int = 1,
        batch_overhead_tokens: int | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.tokenizer = tokenizer
        self._tokenize = tokenizer.tokenize
        self.cache = EmbeddingCache(settings.cache_size)
        self.batcher = Batcher(
            embed_runner(backend),
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            workers=batches_in_flight,
            overhead_tokens=settings.batch_overhead_tokens if batch_overhead_tokens is None else batch_overhead_tokens,
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

    def embed_vectors(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        """Embed texts (cache first, then shared forward passes), in input order: see ``embed_counted``."""
        return self._embed(texts, count_tokens=False, **options)[0]

    def embed_counted(self, texts: Sequence[str], **options: Any) -> tuple[np.ndarray, list[int]]:
        """``embed_vectors`` plus each text's token count as embedded (after any cut), for usage
        reports; every text is tokenised, cached or not.

        Args:
            texts: the texts, as given (nothing is rewritten).
            pooling: a mode from ``POOLINGS``; None uses the model's own.
            normalize: L2-normalise the vectors (after ``dimensions``).
            truncate: cut texts at the model's token limit; when False such a text is an error.
            truncation_direction: "right" keeps a long text's start, "left" its end.
            dimensions: keep only the first this many dimensions (Matryoshka), 1..dimension.
            max_batch: at most this many of these texts per forward pass.
            field: the request field the texts came from, for error messages.

        Returns:
            (len(texts), dimensions or dimension) float32 array, and the token counts.

        Raises:
            InvalidInput: a bad option, or a text over the token limit with ``truncate`` False.
            Overloaded: the batch queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        vectors, counts = self._embed(texts, count_tokens=True, **options)
        return vectors, counts or []

    def _embed(
        self,
        texts: Sequence[str],
        *,
        count_tokens: bool,
        pooling: str | None = None,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: str = "right",
        dimensions: int | None = None,
        max_batch: int | None = None,
        field: str = "inputs",
    ) -> tuple[np.ndarray, list[int] | None]:
        """The steps, in this order: check the options; look each text up in the cache; admit
        the misses (``Overloaded`` at once when the queue is full, before any tokenising);
        tokenise once (every text when counting or with ``truncate=False``, so a cached vector
        never answers an input over the limit; else the misses, when the backend takes token ids:
        TEI tokenises on its side, and its batches are costed by the length estimate); queue the
        misses, with their token ids, for shared forward passes; cut to ``dimensions``; normalise."""
        mode = pooling or self.backend.default_pooling
        if mode not in POOLINGS:
            raise InvalidInput(f"pooling {mode!r} is not one of {list(POOLINGS)}", field="pooling", limit=list(POOLINGS))
        check_direction(truncation_direction)
        self._check_dimensions(dimensions)
        keys = [(self.model_id, mode, truncation_direction, text) for text in texts]
        found = self.cache.get_many(keys)
        missing: dict[str, list[int]] = {}
        for i, (text, vec) in enumerate(zip(texts, found)):
            if vec is None:
                missing.setdefault(text, []).append(i)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, vec in enumerate(found):
            if vec is not None:
                out[i] = vec
        counts: list[int] | None = None
        with self._admit(missing) as admitted:
            first_seen = _first_positions(texts) if count_tokens or not truncate else {}
            if first_seen:
                to_tokenize = list(first_seen)
            else:  # only the backend would use the ids: TEI tokenises on its side
                to_tokenize = list(missing) if self.backend.takes_token_ids else []
            ids, full = self._tokenize(to_tokenize, truncation_direction) if to_tokenize else ([], [])
            if not truncate:
                self._check_token_limit(to_tokenize, full, first_seen, field, truncation_direction)
            encoded = dict(zip(to_tokenize, ids))
            if count_tokens:
                counts = [len(encoded[text]) for text in texts]
            if missing:
                unique = list(missing)
                truncation = truncation_direction if truncate else None
                vectors = self._compute(unique, [encoded.get(t) for t in unique], mode, truncation, max_batch, admitted)
                self.cache.put_many([(self.model_id, mode, truncation_direction, t) for t in unique], vectors)
                for text, row in zip(unique, vectors):
                    out[missing[text]] = row
        if dimensions is not None:
            out = np.ascontiguousarray(out[:, :dimensions])
        return (l2_normalize(out) if normalize else out), counts

    def _check_dimensions(self, dimensions: int | None, field: str = "dimensions") -> None:
        if dimensions is not None and not 1 <= dimensions <= self.dimension:
            raise InvalidInput(f"{field} must be 1..{self.dimension} (the model's dimension), got {dimensions}",
                               field=field, limit=self.dimension)

    def refuse_if_overloaded(self) -> None:
        """Raise ``Overloaded`` (with ``retry_after_s``) if new model work would be refused now;
        the HTTP guard asks before parsing a request's body."""
        self.batcher.admit(0, 0)

    def _admit(self, texts: Sequence[str]) -> Any:
        """A place in the batch queue for these texts (``Overloaded`` now if there is none), sized
        before tokenising by a cheap estimate: ~4 characters a token, at most the model's limit."""
        if not texts:
            return contextlib.nullcontext()
        return self.batcher.admit(len(texts), sum(self._estimate_tokens(t) for t in texts))

    def _estimate_tokens(self, text: str) -> int:
        """A text's cost before (or instead of) tokenising it: ~4 characters a token, at most the limit."""
        return min(self.backend.max_input_tokens, len(text) // CHARS_PER_TOKEN + 2)

    def _check_token_limit(self, texts: list[str], counts: list[int], position: dict[str, int], field: str,
                           direction: str) -> None:
        limit = self.backend.max_input_tokens
        for text, n in zip(texts, counts):
            if n > limit:
                pos = position[text]
                kept = "first" if direction == "right" else "last"
                raise InvalidInput(
                    f"{field}[{pos}] has {n} tokens; the model accepts at most {limit}. "
                    f"Send truncate=true to embed its {kept} tokens, or split the text.",
                    field=f"{field}[{pos}]",
                    limit=limit,
                    tokens=n,
                )

    def _compute(
        self, texts: list[str], token_ids: list[list[int] | None], mode: str, truncation: str | None,
        max_batch: int | None, admitted: Admission | None,
    ) -> np.ndarray:
        work = [EmbedWork(text, mode, truncation, ids) for text, ids in zip(texts, token_ids)]
        tokens = [len(ids) if ids is not None else self._estimate_tokens(text) for text, ids in zip(texts, token_ids)]
        futures = self.batcher.submit(work, tokens, max_batch, admitted)
        return np.stack(wait_for(futures, self.settings.request_timeout_s))

    def embed_tokens(self, texts: Sequence[str], *, truncate: bool = True, truncation_direction: str = "right",
                     field: str = "inputs") -> list[np.ndarray]:
        """Each text's token embeddings (not pooled, not normalised; TEI's ``/embed_all``).

        Not cached and not batched with other callers: one forward pass for this request, after
        the same admission and token-limit checks as every other embedding.
        """
        check_direction(truncation_direction)
        with self._admit(texts):
            ids, full = self._tokenize(texts, truncation_direction)  # once: the backend takes these ids
            if not truncate:
                self._check_token_limit(list(texts), full, _first_positions(texts), field, truncation_direction)
            return self.backend.embed_tokens(texts, truncation_direction if truncate else None, ids)

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[dict[str, Any]]]:
        """Each text's tokens (id, text, special, start, stop), as the model's tokenizer sees them."""
        return self.tokenizer.token_details(texts, add_special_tokens)

"""Rerankers: what scores a query against each of a list of texts.

Two implementations of one shape (``RerankService``), so the engine never asks whether a
cross-encoder is configured:

- ``RerankPipeline``: a cross-encoder. Pairs from many callers share forward passes through a
  ``Batcher`` of their own (token budget, bounded queue -> 429), over whatever serves the
  reranker (local ``CrossEncoder``, or its TEI with the local model behind it). Raw logits come
  back; the activation is applied only if a dialect asks for it.
- ``BiEncoderReranker``: the stand-in when no cross-encoder is configured: the embedding model's
  cosine. As the second stage of a search it reuses the vector stage's scores (the same cosine)
  instead of embedding the query and the candidates again.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Protocol, Sequence

import numpy as np

from ..backends.factory import BuiltService
from ..backends.protocols import PairTokenizer, Reranker, RerankWork
from ..errors import InvalidInput, naming
from ..settings import Settings
from .batcher import Batcher, estimate_tokens
from .embedding import EmbeddingPipeline, check_direction, wait_for
from .results import BI_ENCODER, CROSS_ENCODER, EmbedOptions, ModelState, Reranked, RerankOptions
from .similarity import scores as cosine_scores


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _cosine_relevance(cosine: np.ndarray) -> np.ndarray:
    return ((cosine + 1.0) / 2.0).astype(np.float32)


class RerankService(Protocol):
    """What the engine asks of a reranker, whichever kind it is."""

    def describe(self) -> ModelState:
        """What scores rerank requests now."""
        ...

    def check_admission(self) -> None:
        """Raise ``Overloaded`` now if new pairs would be refused (reserves nothing)."""
        ...

    def rerank(self, query: str, texts: Sequence[str], options: RerankOptions = RerankOptions()) -> Reranked:
        """Each text's relevance to the query, in input order."""
        ...

    def rescore(self, query: str, texts: Sequence[str], vector_scores: np.ndarray) -> Reranked:
        """The second stage of a search: candidates already scored by vector, scored again."""
        ...

    def close(self) -> None:
        """Stop whatever the reranker runs."""
        ...


class RerankPipeline:
    """Pairs in, raw relevance logits out, for one cross-encoder (see module docstring)."""

    def __init__(self, settings: Settings, built: BuiltService) -> None:
        self.settings = settings
        self.backend: Reranker = built.service  # type: ignore[assignment]
        self.model: PairTokenizer = built.tokenizer
        self.batcher = Batcher.for_service(
            self.backend.score, settings, built.profile, max_batch_tokens=settings.rerank_max_batch_tokens,
            max_batch_size=settings.rerank_max_batch_size, name="rerank-batcher", unit="pairs",
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def max_input_tokens(self) -> int:
        return self.backend.max_input_tokens

    def describe(self) -> ModelState:
        """What scores rerank requests: this cross-encoder, who serves it, its batcher."""
        return ModelState(model=self.model_id, kind=CROSS_ENCODER, backend=self.backend.kind,
                          runtime=self.backend.runtime, max_input_tokens=self.max_input_tokens,
                          activation=self.model.activation_name, tei=self.backend.status(),
                          batching=self.batcher.stats())

    def check_admission(self) -> None:
        self.batcher.check_admission()

    def rerank(self, query: str, texts: Sequence[str], options: RerankOptions = RerankOptions()) -> Reranked:
        """Each (query, text) pair's raw logit, with the model's activation to apply on demand.

        Raises:
            InvalidInput: a bad option, or a pair over the limit with ``truncate`` False (``index``:
                the text's position).
            Overloaded: the queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        logits, counts = self._logits(query, texts, options)
        return Reranked(logits, sum(counts), self.describe(), self.model.activate, _sigmoid)

    def rescore(self, query: str, texts: Sequence[str], vector_scores: np.ndarray) -> Reranked:
        """A cross-encoder reads every candidate with the query: the vector scores are not reused."""
        return self.rerank(query, texts)

    def _logits(self, query: str, documents: Sequence[str], options: RerankOptions) -> tuple[np.ndarray, list[int]]:
        direction = options.truncation_direction
        check_direction(direction)
        limit = self.max_input_tokens
        estimate = sum(estimate_tokens(len(query) + len(d), limit, special_tokens=3) for d in documents)
        # admitted (or refused with 429) before any tokenising
        with self.batcher.admit(len(documents), estimate) if documents else contextlib.nullcontext() as admitted:
            docs = (self._cut_documents(documents, options.max_tokens_per_doc) if options.max_tokens_per_doc
                    else list(documents))
            ids, full = self.model.tokenize_pairs(query, docs, direction, full_lengths=not options.truncate)
            for i, n in enumerate(full or []):
                if n > limit:
                    raise InvalidInput.for_item(
                        i, f"with the query has {n} tokens; the reranker reads at most {limit} per pair. "
                        "Send truncate=true to cut it, or shorten the query or the document.",
                        limit=limit, tokens=n)
            truncation = direction if options.truncate else None
            work = [RerankWork(query, d, pair, truncation) for d, pair in zip(docs, ids)]
            futures = self.batcher.submit(work, [len(p.input_ids) for p in ids], admitted=admitted)
            logits = wait_for(futures, self.settings.request_timeout_s)
        return np.asarray(logits, dtype=np.float32), [len(p.input_ids) for p in ids]

    def _cut_documents(self, documents: Sequence[str], max_tokens: int) -> list[str]:
        """Each document cut after its first ``max_tokens`` tokens (at a token's last character)."""
        ends = self.model.document_token_offsets(documents)
        return [doc if len(offsets) <= max_tokens else doc[: offsets[max_tokens - 1]]
                for doc, offsets in zip(documents, ends)]

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()


class BiEncoderReranker:
    """The reranker when no cross-encoder is configured: the embedding model's cosine (see
    module docstring). Its queue is the embedder's."""

    NOTE = "no EMBEDDINGS_RERANK_MODEL configured: scored by the embedding model's cosine"

    def __init__(self, embedder: EmbeddingPipeline) -> None:
        self.embedder = embedder

    def describe(self) -> ModelState:
        backend = self.embedder.backend
        return ModelState(model=backend.model_id, kind=BI_ENCODER, backend=backend.kind, runtime=backend.runtime,
                          max_input_tokens=backend.max_input_tokens, note=self.NOTE)

    def check_admission(self) -> None:
        self.embedder.check_admission()

    def rerank(self, query: str, texts: Sequence[str], options: RerankOptions = RerankOptions()) -> Reranked:
        """The cosine of the query to each text (each read on its own, up to the model's limit;
        ``max_tokens_per_doc`` does not apply), the query with the model's query prompt and the
        texts with its document prompt, as a search embeds them."""
        embed = EmbedOptions(truncate=options.truncate, truncation_direction=options.truncation_direction,
                             count_tokens=True)
        prompts = self.embedder.model_prompts
        if options.truncate and prompts.symmetric:
            both = self.embedder.embed([query, *texts], replace(embed, prompt_name=prompts.query_name))
            vectors, tokens = both.vectors, both.tokens
            cosine = cosine_scores(vectors[:1], vectors[1:])[0]
        else:  # separately: each with its prompt, and a text over the limit named by its own index
            with naming("query"):
                q = self.embedder.embed([query], replace(embed, prompt_name=prompts.query_name))
            t = self.embedder.embed(texts, replace(embed, prompt_name=prompts.document_name))
            cosine, tokens = cosine_scores(q.vectors, t.vectors)[0], q.tokens + t.tokens
        return Reranked(cosine, tokens, self.describe(), _identity, _cosine_relevance)

    def rescore(self, query: str, texts: Sequence[str], vector_scores: np.ndarray) -> Reranked:
        """The vector stage's scores are this model's cosine already: reused, nothing is embedded."""
        return Reranked(np.asarray(vector_scores), 0, self.describe(), _identity,
                        _cosine_relevance)

    def close(self) -> None:
        """Nothing of its own to stop: the embedder is closed by the engine."""

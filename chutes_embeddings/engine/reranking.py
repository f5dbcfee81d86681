"""Scoring query-document pairs with a cross-encoder: admission, tokenising once, batching.

``RerankPipeline`` is the reranker's counterpart of ``EmbeddingPipeline``: pairs from many callers
share forward passes through a ``Batcher`` of their own (token budget, bounded queue -> 429), over
whatever serves the reranker (local ``CrossEncoder``, or its TEI with the local model behind it).
It returns raw logits; what a score means to each caller (the model's activation, TEI's sigmoid,
Cohere's [0, 1] relevance) is decided by the engine verb and the dialects.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from ..backends.cross_encoder import RerankWork
from ..backends.factory import BuiltBackend
from .batcher import Batcher
from ..errors import InvalidInput
from .embedding import CHARS_PER_TOKEN, check_direction, wait_for
from ..settings import Settings

CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"


class RerankPipeline:
    """Pairs in, raw relevance logits out, for one cross-encoder (see module docstring)."""

    def __init__(self, settings: Settings, built: BuiltBackend) -> None:
        self.settings = settings
        self.backend = built.backend
        self.model = built.model
        self.batcher = Batcher(
            self.backend.score,
            max_batch_tokens=settings.rerank_max_batch_tokens,
            max_batch_size=settings.rerank_max_batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            workers=built.profile.in_flight,
            overhead_tokens=(settings.batch_overhead_tokens if built.profile.overhead_tokens is None
                             else built.profile.overhead_tokens),
            name="rerank-batcher",
            unit="pairs",
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def max_input_tokens(self) -> int:
        return self.backend.max_input_tokens

    def describe(self) -> dict[str, Any]:
        """What scores rerank requests, for answers, /info and /health."""
        return {"model": self.model_id, "kind": CROSS_ENCODER, "backend": self.backend.kind,
                "activation": self.model.activation_name, "max_input_tokens": self.max_input_tokens}

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The model's own activation (as ``CrossEncoder.predict`` applies it)."""
        return self.model.activate(logits)

    def logits(self, query: str, documents: Sequence[str], *, truncate: bool = True,
               truncation_direction: str = "right", max_tokens_per_doc: int | None = None,
               field: str = "texts") -> tuple[np.ndarray, list[int]]:
        """Each (query, document) pair's raw logit, and its length in tokens as scored.

        Args:
            query, documents: the pairs are (query, documents[i]).
            truncate: cut a pair over the model's token limit (the longer text loses tokens, as
                the tokenizer's ``longest_first`` does); False makes such a pair an error.
            truncation_direction: "right" keeps the start of what is cut, "left" its end.
            max_tokens_per_doc: first cut each document to this many tokens (Cohere's option).
            field: the request field the documents came from, for error messages.

        Raises:
            InvalidInput: a bad option, or a pair over the limit with ``truncate`` False.
            Overloaded: the queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        check_direction(truncation_direction)
        limit = self.max_input_tokens
        estimate = sum(min(limit, (len(query) + len(d)) // CHARS_PER_TOKEN + 3) for d in documents)
        # admitted (or refused with 429) before any tokenising
        with self.batcher.admit(len(documents), estimate) if documents else contextlib.nullcontext() as admitted:
            docs = self._cut_documents(documents, max_tokens_per_doc) if max_tokens_per_doc else list(documents)
            ids, full = self.model.tokenize_pairs(query, docs, truncation_direction, full_lengths=not truncate)
            for i, n in enumerate(full or []):
                if n > limit:
                    raise InvalidInput(
                        f"the query with {field}[{i}] has {n} tokens; the reranker reads at most {limit} per "
                        "pair. Send truncate=true to cut it, or shorten the query or the document.",
                        field=f"{field}[{i}]", limit=limit, tokens=n)
            truncation = truncation_direction if truncate else None
            work = [RerankWork(query, d, pair, truncation) for d, pair in zip(docs, ids)]
            futures = self.batcher.submit(work, [len(p.input_ids) for p in ids], admitted=admitted)
            scores = wait_for(futures, self.settings.request_timeout_s)
        return np.asarray(scores, dtype=np.float32), [len(p.input_ids) for p in ids]

    def _cut_documents(self, documents: Sequence[str], max_tokens: int) -> list[str]:
        """Each document cut after its first ``max_tokens`` tokens (at a token's last character)."""
        ends = self.model.document_token_offsets(documents)
        return [doc if len(offsets) <= max_tokens else doc[: offsets[max_tokens - 1]]
                for doc, offsets in zip(documents, ends)]

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()

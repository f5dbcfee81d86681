"""Learned-sparse (SPLADE) encoding: texts in, one sparse vector over the vocabulary per text out.

``SparsePipeline`` is the sparse encoder's pipeline, built as the reranker's is: texts from many
callers share forward passes through a ``Batcher`` of its own (token budget, bounded queue ->
429), over whatever serves the model (the local ``SparseEncoder``, or its TEI with the local
model behind it). Each text is tokenised once, by the local model's tokenizer, in the caller's
thread after admission: the ids feed a local pass, and the counts the token limit and usage.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

from ..backends.factory import BuiltService
from ..backends.protocols import SparseEncoder, SparseWork, Tokenizer
from ..errors import InvalidInput
from ..settings import Settings
from ..store import SparseVector
from .batcher import Batcher, estimate_tokens
from .embedding import check_direction, wait_for
from .results import SPARSE_ENCODER, ModelState, SparseEmbedded


class SparsePipeline:
    """Texts in, learned-sparse vectors out, for one SPLADE model (see module docstring)."""

    def __init__(self, settings: Settings, built: BuiltService) -> None:
        self.settings = settings
        self.backend: SparseEncoder = built.service  # type: ignore[assignment]
        self.tokenizer: Tokenizer = built.tokenizer
        self.batcher = Batcher.for_service(
            self.backend.encode, settings, built.profile, max_batch_tokens=settings.sparse_max_batch_tokens,
            max_batch_size=settings.sparse_max_batch_size, name="sparse-batcher", unit="texts",
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size

    def describe(self) -> ModelState:
        """What encodes sparse requests: this model, who serves it, its batcher."""
        return ModelState(model=self.model_id, kind=SPARSE_ENCODER, backend=self.backend.kind,
                          runtime=self.backend.runtime, max_input_tokens=self.backend.max_input_tokens,
                          tei=self.backend.status(), batching=self.batcher.stats())

    def check_admission(self) -> None:
        """Raise ``Overloaded`` now if new texts would be refused (reserves nothing)."""
        self.batcher.check_admission()

    def encode(self, texts: Sequence[str], *, truncate: bool = True,
               truncation_direction: str = "right") -> SparseEmbedded:
        """Each text's sparse vector, in input order, and its tokens as encoded.

        Raises:
            InvalidInput: a bad truncation direction, or a text over the limit with ``truncate``
                False (``index``: its position).
            Overloaded: the queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        check_direction(truncation_direction)
        limit = self.backend.max_input_tokens
        estimate = sum(estimate_tokens(len(t), limit) for t in texts)
        # admitted (or refused with 429) before any tokenising
        with self.batcher.admit(len(texts), estimate) if texts else contextlib.nullcontext() as admitted:
            ids, full = self.tokenizer.tokenize(texts, truncation_direction)
            if not truncate:
                for i, n in enumerate(full):
                    if n > limit:
                        kept = "first" if truncation_direction == "right" else "last"
                        raise InvalidInput.for_item(
                            i, f"has {n} tokens; the sparse model accepts at most {limit}. Send truncate=true "
                            f"to encode its {kept} tokens, or split the text.", limit=limit, tokens=n)
            truncation = truncation_direction if truncate else None
            work = [SparseWork(text, row, truncation) for text, row in zip(texts, ids)]
            futures = self.batcher.submit(work, [len(row) for row in ids], admitted=admitted)
            weights = wait_for(futures, self.settings.request_timeout_s)
        vectors = [SparseVector(tuple(w.indices.tolist()), tuple(w.values.tolist())) for w in weights]
        return SparseEmbedded(vectors, [len(row) for row in ids], self.describe())

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()

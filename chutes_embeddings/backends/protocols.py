"""The model services' one shape: what every backend of every kind offers the engine.

A model service turns work items into numbers for one model: an ``Embedder`` texts into raw
pooled vectors, a ``Reranker`` query-document pairs into raw logits, a ``SparseEncoder`` texts into
learned-sparse (SPLADE) weights over its vocabulary. Each is served locally, by a supervised TEI, or
by TEI with the local model behind it (``failover``), and the engine cannot tell which: it reads
the same attributes and calls the same methods. Normalisation, caching, batching and admission
belong to the engine's pipelines, never to a backend.

The local model that tokenises for a service is a ``Tokenizer`` (embedders) or a
``PairTokenizer`` (rerankers): the engine tokenises each text at most once, with the local
tokenizer, whoever serves the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

# How a text over the model's token limit is cut: "right" keeps its start, "left" its end; None
# means it must not be cut (the engine refuses such a text before it reaches a backend).
TRUNCATION_DIRECTIONS = ("right", "left")


@dataclass(frozen=True)
class BatchingProfile:
    """How the engine's batcher should feed a service: what suits whoever serves it."""

    in_flight: int = 1  # forward passes run at once
    overhead_tokens: int | None = None  # one more pass's cost in padded tokens; None: the setting


@dataclass(slots=True)
class EmbedWork:
    """One text queued for a forward pass: how to pool it, how it may be cut (``truncation``:
    ``right``/``left``, or None: it must not be), and, once the batcher's preparing step has
    tokenised it, its token ids (cut at the model's limit) and its whole length in tokens."""

    text: str
    pooling: str
    truncation: str | None
    ids: Sequence[int] | None = None
    full_tokens: int | None = None
    counted: bool = False  # tokenise it even for a backend that tokenises on its side (usage, limits)


class PairIds(NamedTuple):
    """One query-document pair as the model's inputs (special tokens included)."""

    input_ids: list[int]
    token_type_ids: list[int]


class RerankWork(NamedTuple):
    """One pair queued for scoring: the texts (what TEI takes) and the local tokenizer's ids."""

    query: str
    document: str
    ids: PairIds
    truncation: str | None


class SparseWork(NamedTuple):
    """One text queued for a sparse encoding: the text (what TEI takes), the local tokenizer's ids
    (cut at the model's limit) and how it may be cut (``right``/``left``, or None: it must not be)."""

    text: str
    ids: list[int]
    truncation: str | None


class SparseWeights(NamedTuple):
    """One text's learned-sparse vector: vocabulary ids (int64, ascending, distinct) and their
    weights (float32, all > 0)."""

    indices: np.ndarray
    values: np.ndarray


@runtime_checkable
class ModelService(Protocol):
    """What every model service offers, whatever it computes and whoever serves it."""

    kind: str  # who serves it now: "local" or "tei" (what /health reports)
    runtime: str  # e.g. "torch-cpu", "onnx-fp32", "tei"
    model_id: str
    max_input_tokens: int
    # Whether it uses the engine's token ids (a local model), or tokenises on its own side (TEI):
    # then the engine tokenises only what it must know itself (usage counts, limits).
    takes_token_ids: bool

    def is_healthy(self) -> bool:
        """Whether the service can answer now."""
        ...

    def status(self) -> dict[str, Any] | None:
        """The supervised TEI's state for /info (``serving``: TEI answers now), or None when no
        TEI stands behind the service."""
        ...

    def close(self) -> None:
        """Release processes, connections and memory."""
        ...


@runtime_checkable
class Embedder(ModelService, Protocol):
    """Texts in, raw (un-normalised) float32 vectors out, one row per text."""

    dimension: int
    default_pooling: str

    def embed(self, texts: Sequence[str], poolings: Sequence[str], truncations: Sequence[str | None],
              token_ids: Sequence[Sequence[int] | None] | None = None) -> np.ndarray:
        """Raw (len(texts), dimension) float32 vectors, text i pooled with poolings[i].

        ``truncations[i]`` is ``"right"``/``"left"`` (cut text i at the limit from that side) or
        None (it must not be cut; a backend that finds it over its limit raises ``InvalidInput``;
        the engine checks the local limit before queueing). ``token_ids[i]``, when given, is text i
        already tokenised by the engine (with the local model's tokenizer, cut at its limit): a
        local backend uses it instead of tokenising again.
        """
        ...

    def embed_tokens(self, texts: Sequence[str], truncation: str | None,
                     token_ids: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        """Each text's un-pooled token embeddings, a (tokens, dimension) float32 array per text
        (``token_ids`` as for ``embed``)."""
        ...


@runtime_checkable
class Reranker(ModelService, Protocol):
    """Query-document pairs in, one raw relevance logit per pair out."""

    def score(self, work: Sequence[RerankWork]) -> np.ndarray:
        """Raw logits, one per pair of ``work``, in order."""
        ...


@runtime_checkable
class SparseEncoder(ModelService, Protocol):
    """Texts in, one learned-sparse vector over the model's vocabulary per text out."""

    vocab_size: int  # the vectors' dimension: every index is below it

    def encode(self, work: Sequence[SparseWork]) -> list[SparseWeights]:
        """Each text's non-zero weights, in the order of ``work``."""
        ...


@runtime_checkable
class Tokenizer(Protocol):
    """The embedder's local tokenizer, as the engine uses it."""

    def tokenize(self, texts: Sequence[str], direction: str = "right") -> tuple[list[list[int]], list[int]]:
        """Each text's ids cut at the model's limit (from ``direction``), and its full token count."""
        ...

    def token_details(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[dict[str, Any]]]:
        """Each text's tokens as TEI's ``/tokenize`` reports them (id, text, special, start, stop)."""
        ...

    @property
    def vocab_size(self) -> int:
        """How many ids the tokenizer knows: valid ids are ``0 .. vocab_size - 1``."""
        ...

    def decode(self, ids: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        """Each id sequence as text (ids within ``vocab_size``)."""
        ...


@runtime_checkable
class PairTokenizer(Protocol):
    """The reranker's local tokenizer and activation, as the engine uses them."""

    activation_name: str

    def tokenize_pairs(self, query: str, documents: Sequence[str], direction: str = "right",
                       full_lengths: bool = False) -> tuple[list[PairIds], list[int] | None]:
        """Each pair's ids cut at the model's limit, and (with ``full_lengths``) its length uncut."""
        ...

    def document_token_offsets(self, documents: Sequence[str]) -> list[list[int]]:
        """Each document's token end offsets in characters, without special tokens."""
        ...

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The model's own activation over raw logits (as ``CrossEncoder.predict`` applies it)."""
        ...

"""Backends: what turns texts into raw pooled vectors.

Every backend returns un-normalised float32 vectors, one row per text, pooled with the mode
asked for that text; normalisation, caching and batching belong to the engine.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

# How a text over the model's token limit is cut: "right" keeps its start, "left" its end; None
# means it must not be cut (the engine refuses such a text before it reaches a backend).
TRUNCATION_DIRECTIONS = ("right", "left")


@runtime_checkable
class Backend(Protocol):
    """The seam between the engine and whatever runs the model."""

    kind: str  # "local" or "tei": what /health reports
    runtime: str  # e.g. "torch-cpu", "onnx-fp32", "tei"
    model_id: str
    dimension: int
    max_input_tokens: int
    default_pooling: str
    # Whether ``embed`` uses the engine's token ids (a local model), or tokenises on its own side
    # (TEI): then the engine tokenises only what it must know itself (usage counts, limits).
    takes_token_ids: bool

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

    def healthy(self) -> bool:
        """Whether the backend can serve now."""
        ...

    def close(self) -> None:
        """Release processes, connections and memory."""
        ...

"""Pure numpy operations on embeddings: pooling token embeddings, normalising, padding.

One implementation serves every backend: the local backends pool their padded hidden states
here, and the TEI backend pads TEI's per-token ``/embed_all`` output and pools it here too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

POOLINGS: tuple[str, ...] = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean")

# sentence-transformers' names for the same pooling modes.
ST_POOLING_NAMES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool right-padded token embeddings into one vector per text.

    Args:
        hidden: (batch, tokens, dim) float token embeddings.
        mask: (batch, tokens) attention mask, 1 for real tokens (right padding).
        mode: one of ``POOLINGS``.

    Returns:
        (batch, dim) float32 array, not normalised.
    """
    hidden = hidden.astype(np.float32, copy=False)
    m = mask.astype(np.float32)[:, :, None]
    lengths = np.maximum(m.sum(axis=1), 1.0)  # (batch, 1)
    if mode == "cls":
        return np.ascontiguousarray(hidden[:, 0, :])
    if mode == "mean":
        return (hidden * m).sum(axis=1) / lengths
    if mode == "mean_sqrt_len":
        return (hidden * m).sum(axis=1) / np.sqrt(lengths)
    if mode == "max":
        return np.where(m > 0, hidden, np.float32(-1e9)).max(axis=1)
    if mode == "lasttoken":
        last = mask.astype(np.int64).sum(axis=1) - 1
        return np.ascontiguousarray(hidden[np.arange(hidden.shape[0]), np.maximum(last, 0), :])
    if mode == "weightedmean":
        weights = np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None] * m
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    raise ValueError(f"unknown pooling {mode!r}; this is a bug: requests are validated upstream")


def pool_each(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Pool every row with its own mode (rows sharing a mode are pooled together)."""
    out = np.empty((hidden.shape[0], hidden.shape[2]), dtype=np.float32)
    modes_arr = np.asarray(modes)
    for mode in set(modes):
        rows = np.nonzero(modes_arr == mode)[0]
        out[rows] = pool(hidden[rows], mask[rows], mode)
    return out


def pad_token_embeddings(per_text: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length (tokens, dim) arrays into right-padded (batch, max_tokens, dim) + mask."""
    longest = max(a.shape[0] for a in per_text)
    dim = per_text[0].shape[1]
    hidden = np.zeros((len(per_text), longest, dim), dtype=np.float32)
    mask = np.zeros((len(per_text), longest), dtype=np.int64)
    for i, a in enumerate(per_text):
        hidden[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = 1
    return hidden, mask


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (as sentence-transformers does: a zero vector stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

"""Documents: texts longer than the model's window, stored as chunks (``chunking``)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Document(NamedTuple):
    """A document to store as chunks: its id, its text and its metadata (every chunk's)."""

    id: str
    text: str
    metadata: dict[str, Any]

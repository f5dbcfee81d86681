"""Documents into records: checked, cut into chunks by the model's ``Chunker``, each chunk a record
of its document (``store.Chunk``) once the store service has embedded the chunks."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import InvalidInput
from ..store import Chunk, Record, chunk_id
from ..store.metadata import encode_metadata
from . import Document
from .chunking import Chunker, Chunking, Piece, chunker_for


def chunker_of(engine: Any) -> Chunker:
    """The ``Chunker`` of an engine's embedding model: its tokenizer, its window, its document prompt."""
    embedder = engine.embedder
    prompts = embedder.model_prompts
    return chunker_for(embedder.tokenizer.tokenize, embedder.backend.max_input_tokens,
                       prompts.text(prompts.document_name))


def chunked(chunker: Chunker, documents: Sequence[Document], chunking: Chunking,
            most: int | None) -> list[list[Piece]]:
    """Each document's chunks, after checking the documents.

    Raises:
        InvalidInput: a document id twice (``documents[i].id``), bad metadata, bad chunking
            (``chunking.max_tokens``/``chunking.overlap`` with the limit), or more than ``most``
            chunks in all (``documents``, the limit).
    """
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        if doc.id in seen:
            raise InvalidInput(f"documents[{i}].id {doc.id!r} appears twice; send each document once",
                               field=f"documents[{i}].id")
        seen.add(doc.id)
        encode_metadata(doc.metadata or {}, ("documents", i, "metadata"))
    pieces = chunker.split([d.text for d in documents], chunking)
    count = sum(len(p) for p in pieces)
    if most is not None and count > most:
        raise InvalidInput(f"documents make {count} chunks; a request embeds at most {most}: send fewer "
                           "documents per request, or larger chunks", field="documents", limit=most)
    return pieces


def records_of(documents: Sequence[Document], pieces: Sequence[Sequence[Piece]], vectors: Any,
               sparse: Sequence[Any]) -> list[Record]:
    """The records of the documents' chunks (``vectors`` and ``sparse``: one per chunk, in order),
    each with its document's metadata."""
    chunks = [(doc, i, p) for doc, doc_pieces in zip(documents, pieces) for i, p in enumerate(doc_pieces)]
    return [Record(chunk_id(doc.id, i), p.text, dict(doc.metadata or {}), v, sp, Chunk(doc.id, i, p.start, p.end))
            for (doc, i, p), v, sp in zip(chunks, vectors, sparse)]

"""``store_add_documents``' one plan, shared by both client twins: the batches within the server's
limits, a batch halved when it makes too many chunks, the progress bar, the tally, and the error
that names the failing document with what was committed before it."""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator, NamedTuple, Sequence

from tqdm.auto import tqdm

from ..errors import EmbeddingsError
from .base import _DOCUMENT_INDEX, BODY_BYTES_PER_CHAR, Call, ClientBase, shift_text_indices


class Batch(NamedTuple):
    """Documents ``offset`` onwards of the job, and the request that stores them."""

    offset: int
    documents: Sequence[dict[str, Any]]
    call: Call


class DocumentUpload:
    """A ``store_add_documents`` job: iterate its batches, send each ``call``, and report each
    answer (``stored``) or error (``failed``: the batch halved and queued again, or raised)."""

    def __init__(self, documents: Sequence[dict[str, Any]], collection: str, chunking: dict[str, Any] | None,
                 limits: dict[str, Any], resume_from: int, progress: bool) -> None:
        self.collection, self.chunking, self.limits = collection, chunking, limits
        self._queue = deque(_batches(documents, limits, resume_from))
        self._bar = tqdm(total=len(documents), initial=resume_from, disable=not progress, unit="doc")
        self.result: dict[str, Any] = {"collection": collection, "documents": 0, "chunks": 0,
                                       "total_in_collection": None}

    def __iter__(self) -> Iterator[Batch]:
        try:
            while self._queue:
                offset, documents = self._queue.popleft()
                yield Batch(offset, documents,
                            ClientBase._store_add_documents(documents, self.collection, self.chunking))
        finally:
            self._bar.close()

    def stored(self, batch: Batch, body: dict[str, Any]) -> None:
        """A batch the server committed."""
        self.result["documents"] += len(batch.documents)
        self.result["chunks"] += body["added_count"]
        self.result["total_in_collection"] = body["total_in_collection"]
        self._bar.update(len(batch.documents))

    def failed(self, batch: Batch, err: EmbeddingsError) -> None:
        """A batch of several documents refused for making more chunks than a request may embed goes
        again as two halves; any other error is raised: ``documents[i]`` renamed to its index in
        the whole job, ``err.document_id`` the document it names (else the batch's first), and
        ``err.committed`` how many documents before it are stored (pass it as ``resume_from``)."""
        documents, offset = batch.documents, batch.offset
        if len(documents) >= 2 and err.field == "documents" and err.limit == self.limits.get("max_store_add_chunks"):
            half = len(documents) // 2
            self._queue.extendleft([(offset + half, documents[half:]), (offset, documents[:half])])
            return
        shift_text_indices(err, offset, [], _DOCUMENT_INDEX, "documents")
        index = err.index if err.index is not None else offset  # type: ignore[attr-defined]
        err.document_id = documents[min(max(index - offset, 0), len(documents) - 1)]["id"]  # type: ignore[attr-defined]
        err.committed = offset  # type: ignore[attr-defined]  # batches go in order: all before it are stored
        raise err


def _batches(documents: Sequence[dict[str, Any]], limits: dict[str, Any],
             start: int) -> list[tuple[int, Sequence[dict[str, Any]]]]:
    """(offset, batch) pairs covering ``documents[start:]``, each within the server's limits
    (``/info``'s: documents a request, and characters its body can carry)."""
    most = int(limits["max_store_add_documents"])
    chars = int(limits["max_body_bytes"]) // BODY_BYTES_PER_CHAR
    batches: list[tuple[int, Sequence[dict[str, Any]]]] = []
    first, size = start, 0
    for i in range(start, len(documents)):
        length = len(documents[i]["text"])
        if i > first and (i - first == most or size + length > chars):
            batches.append((first, documents[first:i]))
            first, size = i, 0
        size += length
    if first < len(documents):
        batches.append((first, documents[first:]))
    return batches

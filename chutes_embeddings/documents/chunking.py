"""Documents into chunks that fit the embedding model's window, counted by the model's own tokenizer.

The splitting is ``semantic-text-splitter``'s (Rust, well kept): each chunk holds as much text as
fits ``max_tokens``, cut at the highest semantic level that fits: paragraph (blank lines), then
line, sentence (Unicode segmentation), word, character; consecutive chunks share up to
``overlap`` tokens; each comes with its character offset in the document. Tokens are counted by
the embedder's ``Tokenizer`` (the ``Tokenizer`` protocol), so a chunk is what the model will read,
whoever serves it. Against the splitter over the model's ``tokenizers`` binding directly it gives
the same chunks, a little slower, and cutting costs a small fraction of embedding the chunks on
CPU (``python -m bench.chunking``, docs/benchmarks.md). LangChain's token splitter needs a
``transformers`` tokenizer and splits at separators it is given, not at Unicode sentences.

The model's window (``max_input_tokens``) holds the special tokens and the document prompt too:
``room`` is what is left for a chunk's text, and a ``max_tokens`` over it is refused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from ..errors import InvalidInput

MIN_CHUNK_TOKENS = 16  # a chunk smaller than this carries too little to retrieve by


@dataclass(frozen=True)
class Chunking:
    """How to cut documents: at most ``max_tokens`` tokens a chunk (None: the model's room), and
    ``overlap`` tokens shared by consecutive chunks."""

    max_tokens: int | None = None
    overlap: int = 0


class Piece(NamedTuple):
    """One chunk of a document: its text and its character span ``[start, end)`` in the document."""

    text: str
    start: int
    end: int


def checked(chunking: Chunking, room: int) -> tuple[int, int]:
    """``(max_tokens, overlap)`` of ``chunking`` within the model's ``room``.

    Raises:
        InvalidInput: ``chunking.max_tokens`` under ``MIN_CHUNK_TOKENS`` or over ``room``, or
            ``chunking.overlap`` negative or not under ``max_tokens`` (each naming its limit).
    """
    size = room if chunking.max_tokens is None else chunking.max_tokens
    if size > room:
        raise InvalidInput(f"chunking.max_tokens is {size}: the model reads at most {room} tokens of a chunk "
                           "(its window, less its special tokens and document prompt)",
                           field="chunking.max_tokens", limit=room)
    if size < MIN_CHUNK_TOKENS:
        raise InvalidInput(f"chunking.max_tokens is {size}; a chunk has at least {MIN_CHUNK_TOKENS} tokens",
                           field="chunking.max_tokens", limit=MIN_CHUNK_TOKENS)
    if not 0 <= chunking.overlap < size:
        raise InvalidInput(f"chunking.overlap is {chunking.overlap}; it must be 0..{size - 1} "
                           "(under chunking.max_tokens)", field="chunking.overlap", limit=size - 1)
    return size, chunking.overlap


class Chunker:
    """Splits documents for one model (see module docstring).

    Args:
        count: the number of tokens the model's tokenizer makes of a text (no special tokens).
        room: the tokens of a chunk the model's window holds (``room_of``).
    """

    def __init__(self, count: Callable[[str], int], room: int) -> None:
        self.count = count
        self.room = room
        self._splitters: dict[tuple[int, int], object] = {}
        self._lock = threading.Lock()

    def split(self, texts: Sequence[str], chunking: Chunking) -> list[list[Piece]]:
        """Each text's chunks, in order (a text that fits is one chunk).

        Raises:
            InvalidInput: bad ``chunking`` (``checked``).
        """
        size, overlap = checked(chunking, self.room)
        splitter = self._splitter(size, overlap)
        out = []
        for text in texts:
            pieces = [Piece(chunk, start, start + len(chunk))
                      for start, chunk in splitter.chunk_indices(text)]  # type: ignore[attr-defined]
            out.append(pieces or [Piece(text, 0, len(text))])  # only whitespace: kept as it is
        return out

    def _splitter(self, size: int, overlap: int) -> object:
        from semantic_text_splitter import TextSplitter

        with self._lock:
            splitter = self._splitters.get((size, overlap))
            if splitter is None:
                splitter = TextSplitter.from_callback(self.count, size, overlap)
                self._splitters[(size, overlap)] = splitter
            return splitter


def chunker_for(tokenize: Callable[[Sequence[str]], tuple[list[list[int]], list[int]]], window: int,
                prompt: str) -> Chunker:
    """The ``Chunker`` of a model: its tokenizer's ``tokenize`` (the ``Tokenizer`` protocol), its
    window (``max_input_tokens``) and the document prompt prepended to every chunk ("" for none)."""
    empty, prompted = tokenize(["", prompt])[1]  # the special tokens alone; with the prompt
    return Chunker(lambda text: tokenize([text])[1][0] - empty, window - prompted)

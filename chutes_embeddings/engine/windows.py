"""Long inputs: a text longer than the model's window cut into overlapping token windows, and
the windows' vectors pooled back into one.

What a request does with a text over the window (``LONG_INPUTS``):

- ``truncate``: cut it at the window (``truncate``, ``truncation_direction``), as every route
  always has;
- ``pool``: embed every window and pool them into one vector: the mean of the window vectors
  weighted by each window's token count, then normalised (the OpenAI cookbook's recipe for long
  inputs; vLLM's chunked processing for pooling models aggregates the same way);
- ``windows``: every window's vector, with its character span ``[start, end)`` in the text.

Windows are cut with the model's own tokenizer and its character offsets: each holds at most
``size`` of the text's tokens, consecutive windows share at least ``overlap`` tokens, and each cut
(a window's end, the next one's start) moves back to fall between two words where one lies within
``WORD_BOUNDARY_REACH`` tokens (so no word is split, and the window's text tokenises as it did
inside the whole text: tested for the bundled model's WordPiece). The window embedded is the *text*
of its span, not its token ids: the same text whoever serves the forward pass (TEI takes text and
tokenises on its side), the cache shares it with any request that embeds that text, and a caller
can reproduce a window's vector by embedding ``text[start:end]``. A text within the window is one
window spanning all of it, so pooling it gives exactly today's vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import InvalidInput

if TYPE_CHECKING:  # the request schemas import this module, and the chute file imports them with the SDK only
    import numpy as np

TRUNCATE, POOL, WINDOWS = "truncate", "pool", "windows"
LONG_INPUTS = (TRUNCATE, POOL, WINDOWS)
ONE_VECTOR = (TRUNCATE, POOL)  # those that answer one vector per text: the choices of similarity, search, cluster
# How far (in tokens) a cut may move back from the window's full size to fall between two words.
WORD_BOUNDARY_REACH = 16


@dataclass(frozen=True)
class Window:
    """One window of a text: which text (``index``), its characters ``[start, end)`` and how
    many of the text's tokens it holds (special and prompt tokens not counted: its weight)."""

    index: int
    start: int
    end: int
    tokens: int


def _word_start(offsets: Sequence[tuple[int, int]], k: int) -> bool:
    """Whether token ``k`` begins a word: characters (a space) lie between it and the token before."""
    return offsets[k][0] > offsets[k - 1][1]


def _cut_before(offsets: Sequence[tuple[int, int]], k: int, floor: int) -> int:
    """The token at or before ``k`` (and after ``floor``) that begins a word, within reach; ``k`` if none."""
    for j in range(k, max(floor, k - WORD_BOUNDARY_REACH), -1):
        if _word_start(offsets, j):
            return j
    return k


def cut(index: int, text: str, offsets: Sequence[tuple[int, int]], size: int, overlap: int) -> list[Window]:
    """``text`` as windows of at most ``size`` tokens sharing ``overlap`` tokens (see module docstring).

    Args:
        index: the text's position in the request (``Window.index``).
        text: the text.
        offsets: its tokens' character offsets ``(start, stop)``, special tokens left out.
        size: the most tokens of the text one window holds (the model's window less its special
            and prompt tokens); at least 1.
        overlap: tokens consecutive windows share, ``0 <= overlap < size``.

    Returns:
        The windows in order: the first starts at 0, the last ends at ``len(text)``, and each
        other ends where the next token after it starts, so together they cover the whole text.
    """
    n = len(offsets)
    if n <= size:
        return [Window(index, 0, len(text), n)]
    bounds: list[tuple[int, int]] = []  # token ranges [a, b)
    a = 0
    while True:
        b = a + size
        if b >= n:
            bounds.append((a, n))
            break
        b = _cut_before(offsets, b, a + overlap)  # past the overlap, so every window moves on
        bounds.append((a, b))
        a = _cut_before(offsets, b - overlap, a) if overlap else b
    last = len(bounds) - 1
    return [Window(index, 0 if i == 0 else offsets[a][0], len(text) if i == last else offsets[b][0], b - a)
            for i, (a, b) in enumerate(bounds)]


def one_vector(long_input: str | None) -> str | None:
    """``long_input`` for a verb that compares one vector per text (similarity, search, cluster):
    ``truncate``, ``pool`` or None (the service's setting); ``windows`` raises ``InvalidInput``
    naming the field and the choices."""
    if long_input is not None and long_input not in ONE_VECTOR:
        raise InvalidInput(f"long_input {long_input!r} is not one of {list(ONE_VECTOR)} here: this verb compares "
                           "one vector per text", field="long_input", limit=list(ONE_VECTOR))
    return long_input


def overlap_for(requested: int | None, default: int, most: int, size: int) -> int:
    """The tokens consecutive windows of ``size`` tokens share: ``requested`` (0..``most``, else
    ``InvalidInput`` naming ``window_overlap``) or ``default``, held to half the window."""
    if requested is not None and not 0 <= requested <= most:
        raise InvalidInput(f"window_overlap must be 0..{most} (half the model's window), got {requested}",
                           field="window_overlap", limit=most)
    return min(default if requested is None else requested, size // 2)


def cut_all(texts: Sequence[str], offsets: Sequence[Sequence[tuple[int, int]]], size: int, overlap: int,
            overhead: int, max_windows: int, max_tokens: int) -> list[Window]:
    """Every text's windows (``cut``), in order, within the limits.

    Args:
        texts: the texts; ``offsets``: each one's tokens' character offsets (``offsets_of``).
        size, overlap: as ``cut`` takes them.
        overhead: the tokens each window adds to the text's (special tokens, the prompt's).
        max_windows: the most windows one text may have (``max_windows_per_text``).
        max_tokens: the most tokens all the windows may hold, overheads included (``max_request_tokens``).

    Raises:
        InvalidInput: a text over either limit, by its position (``for_item``), naming the limit
            and the setting (``setting``).
    """
    out: list[Window] = []
    total = 0
    for i, (text, text_offsets) in enumerate(zip(texts, offsets)):
        windows = cut(i, text, text_offsets, size, overlap)
        if len(windows) > max_windows:
            raise InvalidInput.for_item(
                i, f"needs {len(windows)} windows of {size} tokens; at most {max_windows} per text are embedded "
                "(max_windows_per_text)", limit=max_windows, setting="max_windows_per_text")
        total += sum(w.tokens + overhead for w in windows)
        if total > max_tokens:
            raise InvalidInput.for_item(
                i, f"brings the request to {total} tokens in windows; at most {max_tokens} are embedded per request "
                "(max_request_tokens)", limit=max_tokens, setting="max_request_tokens")
        out.extend(windows)
    return out


def offsets_of(details: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """The content tokens' character offsets from ``Tokenizer.token_details`` (specials left out)."""
    return [(d["start"], d["stop"]) for d in details if not d["special"]]


def pool(vectors: np.ndarray, windows: Sequence[Window], texts: int, normalize: bool) -> np.ndarray:
    """One vector per text: the mean of its windows' rows of ``vectors`` weighted by their token
    counts (a window of no tokens, a blank text's, weighs 1), L2-normalised when ``normalize``."""
    import numpy as np

    from .vectors import normalize as l2_normalize

    out = np.zeros((texts, vectors.shape[1]), dtype=np.float32)
    weights = np.zeros(texts, dtype=np.float64)
    for row, w in zip(vectors, windows):
        weight = max(w.tokens, 1)
        out[w.index] += weight * row
        weights[w.index] += weight
    out /= weights[:, None].astype(np.float32)
    return l2_normalize(out) if normalize else out

"""Deterministic model services for tests that need no model: numpy only, no torch, no files.

They implement the Protocols of ``chutes_embeddings.backends.protocols`` the way the local model
does, so the engine and the HTTP edge cannot tell them from a real one:

- ``FakeTokenizer`` (``Tokenizer``): lower-cased words and punctuation, words longer than six
  characters cut into wordpiece-like pieces (``"##"`` continuations), ids hashed from the piece,
  ``[CLS] ... [SEP]`` around each text, cut at ``max_input_tokens`` from either side.
- ``FakeEmbedder`` (``Embedder``): a token's embedding is drawn from a generator seeded by its id,
  and every token also carries the text's mean (a crude attention), so equal texts give equal
  vectors, texts sharing words give close ones, and every pooling mode is defined per text.
- ``FakePairTokenizer`` (``PairTokenizer``) and ``FakeReranker`` (``Reranker``): the pair as
  ``[CLS] query [SEP] document [SEP]`` cut longest-first, and a logit that grows with the share
  of the query's tokens found in the document; ``activate`` is the sigmoid.
- ``FakeSparseEncoder`` (``SparseEncoder``): each distinct token of the text (specials left out)
  weighs ``log1p(occurrences) * (0.5 + (id % 89) / 89)``, and "expands" to a second id,
  ``FIRST_WORD_ID + (id * 7919) % (vocab - FIRST_WORD_ID)``, at a third of that weight, as SPLADE
  adds related terms; weights are summed per id.

Everything is a pure function of its input: no clocks, no global random state.
"""

from __future__ import annotations

import re
import threading
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from chutes_embeddings.backends.protocols import PairIds, RerankWork, SparseWeights, SparseWork
from chutes_embeddings.errors import InvalidInput

CLS_ID, SEP_ID, PAD_ID = 101, 102, 0
SPECIAL_IDS = frozenset({CLS_ID, SEP_ID, PAD_ID})
FIRST_WORD_ID = 1000  # ids below this are reserved for special tokens, as in BERT's vocabulary
FAKE_POOLINGS = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean")

_WORDS = re.compile(r"\w+|[^\w\s]")
_PIECE_CHARS = 6


def _pieces(text: str) -> list[tuple[str, int, int]]:
    """The text's pieces as (piece, start, stop): words and punctuation, long words cut in pieces
    of six characters whose continuations are marked ``##`` as wordpiece marks them."""
    out: list[tuple[str, int, int]] = []
    for match in _WORDS.finditer(text):
        word, start = match.group().lower(), match.start()
        for offset in range(0, len(word), _PIECE_CHARS):
            piece = word[offset : offset + _PIECE_CHARS]
            out.append((piece if offset == 0 else "##" + piece, start + offset, start + offset + len(piece)))
    return out


class FakeTokenizer:
    """A deterministic ``Tokenizer`` (see the module docstring).

    Args:
        max_input_tokens: the limit every text is cut at, special tokens included (at least 3).
        vocab_size: ids are hashed into ``[1000, vocab_size)``.
    """

    prompts: dict[str, str] = {}  # as a loaded model whose config defines no prompts
    default_prompt_name: str | None = None

    def __init__(self, max_input_tokens: int = 32, vocab_size: int = 30_522) -> None:
        if max_input_tokens < 3:
            raise ValueError("max_input_tokens must leave room for a token between [CLS] and [SEP]")
        self.max_input_tokens = max_input_tokens
        self.vocab_size = vocab_size
        self.seen: list[str] = []  # every text asked for, in order (what the engine tokenised)
        self.pieces: dict[int, str] = {}  # id -> the last piece seen with it (what ``decode`` answers)
        self._lock = threading.Lock()

    def piece_id(self, piece: str) -> int:
        """The id of one piece (stable across processes: a CRC, not Python's salted hash)."""
        piece_id = FIRST_WORD_ID + zlib.crc32(piece.encode()) % (self.vocab_size - FIRST_WORD_ID)
        self.pieces[piece_id] = piece
        return piece_id

    def content_ids(self, text: str) -> list[int]:
        """The text's ids without special tokens and uncut."""
        return [self.piece_id(piece) for piece, _, _ in _pieces(text)]

    def cut(self, content: Sequence[int], keep: int, direction: str) -> list[int]:
        """``content`` cut to ``keep`` ids: its start kept (``"right"``) or its end (``"left"``)."""
        if direction not in ("right", "left"):
            raise ValueError(f"unknown truncation direction {direction!r}")
        if len(content) <= keep:
            return list(content)
        return list(content[:keep]) if direction == "right" else list(content[len(content) - keep :])

    def tokenize(self, texts: Sequence[str], direction: str = "right") -> tuple[list[list[int]], list[int]]:
        """Each text's ids (``[CLS] ... [SEP]``) cut at ``max_input_tokens`` from ``direction``,
        and its full token count."""
        with self._lock:
            self.seen.extend(texts)
        ids, counts = [], []
        for text in texts:
            content = self.content_ids(text)
            counts.append(len(content) + 2)
            ids.append([CLS_ID, *self.cut(content, self.max_input_tokens - 2, direction), SEP_ID])
        return ids, counts

    def decode(self, ids: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        """Each id sequence as text: the pieces seen with those ids (``[UNUSED<id>]`` for others),
        wordpiece continuations joined, specials as ``[CLS]``/``[SEP]``/``[PAD]`` unless skipped."""
        names = {CLS_ID: "[CLS]", SEP_ID: "[SEP]", PAD_ID: "[PAD]"}
        out = []
        for row in ids:
            words: list[str] = []
            for i in row:
                if i in SPECIAL_IDS:
                    if not skip_special_tokens:
                        words.append(names[i])
                    continue
                piece = self.pieces.get(i, f"[UNUSED{i}]")
                if piece.startswith("##") and words:
                    words[-1] += piece[2:]
                else:
                    words.append(piece)
            out.append(" ".join(words))
        return out

    def token_details(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[dict[str, Any]]]:
        """Each text's tokens as TEI's ``/tokenize`` reports them (id, text, special, start, stop)."""
        out = []
        for text in texts:
            tokens = [{"id": self.piece_id(piece), "text": text[start:stop], "special": False, "start": start,
                       "stop": stop} for piece, start, stop in _pieces(text)]
            if add_special_tokens:
                tokens = [{"id": CLS_ID, "text": "[CLS]", "special": True, "start": None, "stop": None}, *tokens,
                          {"id": SEP_ID, "text": "[SEP]", "special": True, "start": None, "stop": None}]
            out.append(tokens)
        return out


def fake_pool(hidden: np.ndarray, mode: str) -> np.ndarray:
    """One text's (tokens, dim) embeddings pooled with ``mode`` (no padding: every row is real)."""
    if mode == "cls":
        return hidden[0]
    if mode == "mean":
        return hidden.mean(axis=0)
    if mode == "mean_sqrt_len":
        return hidden.sum(axis=0) / np.sqrt(len(hidden))
    if mode == "max":
        return hidden.max(axis=0)
    if mode == "lasttoken":
        return hidden[-1]
    if mode == "weightedmean":
        weights = np.arange(1, len(hidden) + 1, dtype=np.float32)[:, None]
        return (hidden * weights).sum(axis=0) / weights.sum()
    raise ValueError(f"unknown pooling {mode!r}")


class _FakeService:
    """What every fake model service shares: served locally, by no TEI, until it is closed."""

    kind = "local"
    runtime = "fake"
    takes_token_ids = True
    closed = False

    def is_healthy(self) -> bool:
        """Whether it answers: until it is closed."""
        return not self.closed

    def status(self) -> None:
        """No TEI stands behind a fake."""
        return None

    def close(self) -> None:
        self.closed = True


class FakeEmbedder(_FakeService):
    """A deterministic ``Embedder`` over a ``FakeTokenizer`` (see the module docstring).

    Args:
        dimension: the vectors' length.
        max_input_tokens: the tokenizer's limit (when ``tokenizer`` is not given).
        default_pooling: what the model would pool with.
        tokenizer: the tokenizer whose ids the engine hands over; one is made when not given.
        on_embed: called with the texts at the start of every ``embed``/``embed_tokens`` call (a
            test can block the model on an event there, or count calls).
        fail_with: raised by every ``embed``/``embed_tokens`` call while set (a broken model).
    """

    def __init__(self, dimension: int = 32, max_input_tokens: int = 32, default_pooling: str = "mean",
                 tokenizer: FakeTokenizer | None = None, model_id: str = "fake/hashed-tokens",
                 on_embed: Callable[[list[str]], None] | None = None,
                 fail_with: BaseException | None = None) -> None:
        if default_pooling not in FAKE_POOLINGS:
            raise ValueError(f"unknown pooling {default_pooling!r}")
        self.tokenizer = tokenizer or FakeTokenizer(max_input_tokens)
        self.dimension = dimension
        self.max_input_tokens = self.tokenizer.max_input_tokens
        self.default_pooling = default_pooling
        self.model_id = model_id
        self.on_embed = on_embed
        self.fail_with = fail_with
        self.calls: list[list[str]] = []  # the texts of every call, in order
        self.received_ids: list[Sequence[int] | None] = []  # per text, the ids the caller handed over
        self.closed = False
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def token_vector(self, token_id: int) -> np.ndarray:
        """A token's own embedding: unit length, drawn from a generator seeded by its id."""
        with self._lock:
            vector = self._vectors.get(token_id)
            if vector is None:
                raw = np.random.default_rng([token_id, self.dimension]).standard_normal(self.dimension)
                vector = (raw / np.linalg.norm(raw)).astype(np.float32)
                self._vectors[token_id] = vector
        return vector

    def hidden_states(self, ids: Sequence[int]) -> np.ndarray:
        """(tokens, dimension) float32: each token's embedding plus half the text's mean, so that
        the first and last tokens (special ones) still say what the text is about."""
        own = np.stack([self.token_vector(int(i)) for i in ids])
        return (own + 0.5 * own.mean(axis=0, keepdims=True)).astype(np.float32)

    def _ids(self, text: str, truncation: str | None, given: Sequence[int] | None) -> list[int]:
        if given is not None:
            return list(given)
        ids, counts = self.tokenizer.tokenize([text], truncation or "right")
        if truncation is None and counts[0] > self.max_input_tokens:
            raise InvalidInput(f"the text has {counts[0]} tokens, more than the model's {self.max_input_tokens}",
                               limit=self.max_input_tokens)
        return ids[0]

    def _start(self, texts: Sequence[str], token_ids: Sequence[Any] | None) -> None:
        if self.closed:
            raise RuntimeError("the fake embedder is closed")
        with self._lock:
            self.calls.append(list(texts))
            self.received_ids.extend(token_ids if token_ids is not None else [None] * len(texts))
        if self.on_embed is not None:
            self.on_embed(list(texts))
        if self.fail_with is not None:
            raise self.fail_with

    def embed(self, texts: Sequence[str], poolings: Sequence[str], truncations: Sequence[str | None],
              token_ids: Sequence[Sequence[int] | None] | None = None) -> np.ndarray:
        """Raw (len(texts), dimension) float32 vectors, text i pooled with poolings[i]."""
        if not len(texts) == len(poolings) == len(truncations) or (token_ids is not None
                                                                  and len(token_ids) != len(texts)):
            raise ValueError("texts, poolings, truncations (and token_ids) must be as long as each other")
        self._start(texts, token_ids)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, (text, mode, truncation) in enumerate(zip(texts, poolings, truncations)):
            given = token_ids[row] if token_ids is not None else None
            out[row] = fake_pool(self.hidden_states(self._ids(text, truncation, given)), mode)
        return out

    def embed_tokens(self, texts: Sequence[str], truncation: str | None,
                     token_ids: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        """Each text's (tokens, dimension) float32 token embeddings, special tokens included."""
        self._start(texts, token_ids)
        return [self.hidden_states(self._ids(text, truncation, token_ids[i] if token_ids is not None else None))
                for i, text in enumerate(texts)]



class FakePairTokenizer:
    """A deterministic ``PairTokenizer`` (see the module docstring): ``[CLS] q [SEP] d [SEP]``,
    token types 0 then 1, cut longest-first at ``max_input_tokens``; ``activate`` is the sigmoid."""

    activation_name = "Sigmoid"

    def __init__(self, max_input_tokens: int = 64, tokenizer: FakeTokenizer | None = None) -> None:
        if max_input_tokens < 5:
            raise ValueError("max_input_tokens must leave room for a query and a document token")
        self.tokenizer = tokenizer or FakeTokenizer(max_input_tokens)
        self.max_input_tokens = max_input_tokens

    def tokenize_pairs(self, query: str, documents: Sequence[str], direction: str = "right",
                       full_lengths: bool = False) -> tuple[list[PairIds], list[int] | None]:
        """Each pair's ids cut at the limit (the longer side loses a token first, as the Hugging
        Face tokenizers' ``longest_first`` does), and with ``full_lengths`` its uncut length."""
        q_full = self.tokenizer.content_ids(query)
        pairs, lengths = [], []
        for document in documents:
            q, d = list(q_full), self.tokenizer.content_ids(document)
            lengths.append(len(q) + len(d) + 3)
            while len(q) + len(d) + 3 > self.max_input_tokens:
                longer = q if len(q) > len(d) else d
                longer.pop(-1 if direction == "right" else 0)
            ids = [CLS_ID, *q, SEP_ID, *d, SEP_ID]
            pairs.append(PairIds(ids, [0] * (len(q) + 2) + [1] * (len(d) + 1)))
        return pairs, lengths if full_lengths else None

    def document_token_offsets(self, documents: Sequence[str]) -> list[list[int]]:
        """Each document's token end offsets in characters, without special tokens."""
        return [[stop for _, _, stop in _pieces(document)] for document in documents]

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The sigmoid, as ``CrossEncoder.predict`` applies it for a one-label model."""
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


class FakeReranker(_FakeService):
    """A deterministic ``Reranker``: the logit is ``6 * share - 3``, ``share`` being the part of
    the query's distinct tokens that the document (as cut) contains, read from the pair's ids."""

    def __init__(self, max_input_tokens: int = 64, model_id: str = "fake/overlap-reranker",
                 on_score: Callable[[list[RerankWork]], None] | None = None) -> None:
        self.max_input_tokens = max_input_tokens
        self.model_id = model_id
        self.on_score = on_score
        self.calls: list[int] = []  # pairs per call
        self.closed = False

    def score(self, work: Sequence[RerankWork]) -> np.ndarray:
        """Raw logits, one per pair of ``work``, in order."""
        if self.closed:
            raise RuntimeError("the fake reranker is closed")
        self.calls.append(len(work))
        if self.on_score is not None:
            self.on_score(list(work))
        out = np.empty(len(work), dtype=np.float32)
        for row, item in enumerate(work):
            query = {i for i, t in zip(item.ids.input_ids, item.ids.token_type_ids) if t == 0 and i not in SPECIAL_IDS}
            document = {i for i, t in zip(item.ids.input_ids, item.ids.token_type_ids)
                        if t == 1 and i not in SPECIAL_IDS}
            share = len(query & document) / max(1, len(query))
            out[row] = 6.0 * share - 3.0
        return out



class FakeSparseEncoder(_FakeService):
    """A deterministic ``SparseEncoder`` over the engine's ``FakeTokenizer`` ids (see the module
    docstring): texts that share words share indices, and every weight is positive.

    Args:
        max_input_tokens: the tokenizer's limit (when ``tokenizer`` is not given).
        tokenizer: the tokenizer whose ids the engine hands over; one is made when not given.
        on_encode: called with the work at the start of every ``encode`` call (a test can block
            the model on an event there, or count calls).
    """

    def __init__(self, max_input_tokens: int = 32, tokenizer: FakeTokenizer | None = None,
                 model_id: str = "fake/hashed-splade",
                 on_encode: Callable[[list[SparseWork]], None] | None = None) -> None:
        self.tokenizer = tokenizer or FakeTokenizer(max_input_tokens)
        self.max_input_tokens = self.tokenizer.max_input_tokens
        self.vocab_size = self.tokenizer.vocab_size
        self.model_id = model_id
        self.on_encode = on_encode
        self.calls: list[int] = []  # texts per call
        self.closed = False

    def expansion(self, token_id: int) -> int:
        """The id a token "expands" to (a related term, as SPLADE's MLM head adds)."""
        return FIRST_WORD_ID + (token_id * 7919) % (self.vocab_size - FIRST_WORD_ID)

    def weights(self, ids: Sequence[int]) -> SparseWeights:
        """One text's weights from its ids (see the module docstring)."""
        counts: dict[int, int] = {}
        for i in ids:
            if i not in SPECIAL_IDS:
                counts[int(i)] = counts.get(int(i), 0) + 1
        total: dict[int, float] = {}
        for token_id, n in counts.items():
            weight = float(np.log1p(n)) * (0.5 + (token_id % 89) / 89)
            total[token_id] = total.get(token_id, 0.0) + weight
            expanded = self.expansion(token_id)
            total[expanded] = total.get(expanded, 0.0) + weight / 3
        indices = np.asarray(sorted(total), dtype=np.int64)
        return SparseWeights(indices, np.asarray([total[int(i)] for i in indices], dtype=np.float32))

    def encode(self, work: Sequence[SparseWork]) -> list[SparseWeights]:
        """Each text's non-zero weights, from the ids the engine handed over."""
        if self.closed:
            raise RuntimeError("the fake sparse encoder is closed")
        self.calls.append(len(work))
        if self.on_encode is not None:
            self.on_encode(list(work))
        return [self.weights(w.ids) for w in work]


def fake_engine(settings: Any, limits: dict[str, Any] | None = None, *, cross_encoder: bool = True,
                embedder: FakeEmbedder | None = None, reranker: FakeReranker | None = None,
                sparse: FakeSparseEncoder | bool = True, prompts: dict[str, str] | None = None,
                default_prompt_name: str | None = None) -> Any:
    """An ``Engine`` over fake model services, built as ``start_engine`` builds the real one: an
    embedding pipeline over a ``FakeEmbedder`` (with ``prompts``, as a model's config defines
    them), either a cross-encoder pipeline over a ``FakeReranker`` or (``cross_encoder=False``) the
    bi-encoder stand-in, and a sparse pipeline over ``sparse`` (a ``FakeSparseEncoder``; True: a
    new one; False: no sparse model)."""
    from chutes_embeddings.backends.factory import BuiltService
    from chutes_embeddings.backends.protocols import BatchingProfile
    from chutes_embeddings.engine.core import Engine
    from chutes_embeddings.engine.embedding import EmbeddingPipeline
    from chutes_embeddings.engine.prompts import ModelPrompts
    from chutes_embeddings.engine.reranking import BiEncoderReranker, RerankPipeline
    from chutes_embeddings.engine.sparse import SparsePipeline

    model = embedder or FakeEmbedder()
    pipeline = EmbeddingPipeline(settings, model, model.tokenizer, BatchingProfile(),
                                 ModelPrompts(prompts or {}, default_prompt_name))
    sparse_pipeline = None
    if sparse is not False:
        encoder = sparse if isinstance(sparse, FakeSparseEncoder) else FakeSparseEncoder()
        sparse_pipeline = SparsePipeline(settings, BuiltService(encoder, BatchingProfile(), encoder.tokenizer))
    if cross_encoder:
        scorer = reranker or FakeReranker()
        built = BuiltService(scorer, BatchingProfile(), FakePairTokenizer(scorer.max_input_tokens))
        return Engine(pipeline, RerankPipeline(settings, built), limits, sparse=sparse_pipeline)
    return Engine(pipeline, BiEncoderReranker(pipeline), limits, sparse=sparse_pipeline)

"""The one path every text takes to become a vector: cache, admission, batching, tokenising.

``EmbeddingPipeline`` owns the cache, the batcher and the tokenizer over one ``Embedder``; the
``Engine`` composes it with the reranker. Synchronous and thread-safe: cords call it from many
worker threads, and one forward pass serves many callers.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..backends.protocols import TRUNCATION_DIRECTIONS, BatchingProfile, Embedder, EmbedWork, Tokenizer
from ..errors import BackendUnavailable, EmbeddingsError, InvalidInput
from ..settings import Settings
from .batcher import Batcher, estimate_tokens
from .cache import EmbeddingCache
from .caller import current_scope
from .prompts import NO_PROMPTS, ModelPrompts
from .results import EMBEDDER, Embedded, EmbedOptions, ModelState
from .vectors import POOLINGS
from .vectors import normalize as l2_normalize
from .windows import LONG_INPUTS, TRUNCATE, WINDOWS, cut_all, offsets_of, overlap_for
from .windows import pool as pool_windows

# The fewest of a text's tokens a window may hold once the prompt and special tokens are in it.
MIN_WINDOW_TOKENS = 16


def embed_runner(backend: Embedder) -> Any:
    """The batcher's run function for ``backend``: one ``Embedder.embed`` call per batch."""

    def run(work: list[EmbedWork]) -> np.ndarray:
        return backend.embed([w.text for w in work], [w.pooling for w in work], [w.truncation for w in work],
                             [w.ids for w in work])

    return run


def wait_for(futures: list[cf.Future], timeout_s: float) -> list[Any]:
    """The futures' results, in order, within ``timeout_s`` (``BackendUnavailable`` after it).

    The futures belong to the current caller's scope (dropped if the caller goes away); on any
    failure the others are cancelled, so nobody computes what nobody will read.
    """
    scope = current_scope()
    if scope is not None:
        scope.track(futures)
    deadline = time.monotonic() + timeout_s
    try:
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
    except cf.TimeoutError:
        for f in futures:
            f.cancel()
        raise BackendUnavailable(f"no answer from the model within {timeout_s:.0f} s; retry later") from None
    except (EmbeddingsError, cf.CancelledError):
        for f in futures:
            f.cancel()
        raise


def check_direction(direction: str) -> None:
    """Refuse a truncation direction that is not ``right`` or ``left``."""
    if direction not in TRUNCATION_DIRECTIONS:
        raise InvalidInput(f"truncation_direction {direction!r} is not one of {list(TRUNCATION_DIRECTIONS)}",
                           field="truncation_direction", limit=list(TRUNCATION_DIRECTIONS))


class TooLong(InvalidInput):
    """A text over the model's limit that must not be cut, found while preparing it (the
    pipeline answers with its position in the request)."""

    def __init__(self, text: str, tokens: int) -> None:
        super().__init__(f"a text has {tokens} tokens, more than the model accepts")
        self.text, self.tokens = text, tokens


class EmbeddingPipeline:
    """Texts in, vectors out, for one embedding model (see module docstring).

    Args:
        settings: the service settings.
        embedder: what serves forward passes (local, TEI, or TEI with local fallback).
        tokenizer: the local model's tokenizer; it tokenises a text at most once, and only when
            its ids or its count are needed, in the batcher's preparing thread (``prepare``).
        profile: how to batch for what serves the model.
        prompts: the model's prompts (its sentence-transformers config's), prepended here to the
            texts of every verb, before the cache and the tokenizer, whoever serves the model.
    """

    def __init__(self, settings: Settings, embedder: Embedder, tokenizer: Tokenizer,
                 profile: BatchingProfile | None = None, prompts: ModelPrompts = NO_PROMPTS) -> None:
        self.settings = settings
        self.backend = embedder
        self.tokenizer = tokenizer
        self.model_prompts = prompts
        self._overheads: dict[str, int] = {}  # prompt text -> the tokens it and the special ones take
        self.cache = EmbeddingCache(settings.cache_size)
        self.batcher = Batcher.for_service(
            embed_runner(embedder), settings, profile or BatchingProfile(),
            max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
            name="batcher", unit="texts", prepare_fn=self.prepare,
        )

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def dimension(self) -> int:
        return self.backend.dimension

    @property
    def prompts(self) -> dict[str, str]:
        """The model's prompts: name -> the text prepended to an input."""
        return dict(self.model_prompts.prompts)

    @property
    def default_prompt_name(self) -> str | None:
        """The prompt applied when a request names none (None: no prompt)."""
        return self.model_prompts.default_name

    def close(self) -> None:
        """Stop the batcher and the backend."""
        self.batcher.close()
        self.backend.close()

    def check_admission(self) -> None:
        """Raise ``Overloaded`` now if new texts would be refused (reserves nothing)."""
        self.batcher.check_admission()

    def describe(self) -> ModelState:
        """What serves this model now, and its batcher's state."""
        return ModelState(model=self.model_id, kind=EMBEDDER, backend=self.backend.kind,
                          runtime=self.backend.runtime, max_input_tokens=self.backend.max_input_tokens,
                          tei=self.backend.status(), batching=self.batcher.stats())

    def embed(self, texts: Sequence[str], options: EmbedOptions = EmbedOptions()) -> Embedded:
        """Embed texts (cache first, then shared forward passes), in input order.

        A text over the model's window is cut (``long_input`` ``truncate``, the default), or
        embedded as overlapping windows, each through the steps below, then pooled into one
        vector (``pool``) or answered window by window (``windows``; see ``engine.windows``).

        The steps, in this order: check the options; prepend the prompt (``options.prompt_name``,
        else the model's default), so the cache keys, the token counts and whoever serves the
        forward pass all see the prompted text; look each text up in the cache; queue the
        misses, raw, for shared forward passes (the one admission: ``Overloaded`` at once when the
        queue is full); the batcher's preparing thread tokenises everything waiting in one call
        while the model runs (``prepare``); cut to ``dimensions``; normalise.

        Returns:
            (len(texts), dimensions or dimension) float32 vectors, and each text's token count as
            embedded (after any cut) when ``options.count_tokens``.

        Raises:
            InvalidInput: a bad option (a prompt the model does not define among them), a text
                over the token limit with ``truncate`` False, or (pooled, windowed) over
                ``max_windows_per_text`` or past ``max_request_tokens`` (``index``: its position
                in ``texts``).
            Overloaded: the batch queue is full.
            BackendUnavailable: no answer within ``request_timeout_s``.
        """
        long_input = options.long_input or self.settings.long_input
        if long_input == TRUNCATE:
            return self._embed_texts(texts, options)
        if long_input not in LONG_INPUTS:
            raise InvalidInput(f"long_input {long_input!r} is not one of {list(LONG_INPUTS)}", field="long_input",
                               limit=list(LONG_INPUTS))
        return self._embed_windows(texts, options, long_input)

    def _embed_windows(self, texts: Sequence[str], options: EmbedOptions, long_input: str) -> Embedded:
        """``embed`` for ``pool`` and ``windows``: cut each text into windows (its own tokens, the
        prompt's and the special ones fill the model's window), check the limits, embed every
        window's text by ``_embed_texts`` (so caching, batching and admission are the usual ones),
        then pool per text or answer per window."""
        self._check_options(options)
        self.check_admission()  # before tokenising texts that could not be queued
        size, overhead = self._window_size(options.prompt_name)
        overlap = overlap_for(options.window_overlap, self.settings.window_overlap, self.max_window_overlap, size)
        details = self.tokenizer.token_details(texts, add_special_tokens=False)
        cut = cut_all(texts, [offsets_of(d) for d in details], size, overlap, overhead,
                      self.settings.max_windows_per_text, self.settings.max_request_tokens)
        embedded = self._embed_texts([texts[w.index][w.start:w.end] for w in cut],
                                     replace(options, truncate=True, truncation_direction="right", count_tokens=True))
        counts = embedded.token_counts or []
        if long_input == WINDOWS:
            return Embedded(embedded.vectors, counts, cut)
        per_text = [0] * len(texts)
        for w, n in zip(cut, counts):
            per_text[w.index] += n
        return Embedded(pool_windows(embedded.vectors, cut, len(texts), options.normalize), per_text)

    def _overhead(self, prompt: str) -> int:
        """The tokens every window of a text adds to its own: the special ones and ``prompt``'s."""
        known = self._overheads.get(prompt)
        if known is None:
            known = self._overheads[prompt] = self.tokenizer.tokenize([prompt])[1][0]
        return known

    def _window_size(self, prompt_name: str | None) -> tuple[int, int]:
        """How many of a text's tokens one window holds, and the tokens each window adds to them
        (special tokens and the prompt's, which every window carries: each window is an input of
        the model as ``SentenceTransformer.encode(windows, prompt_name=...)`` would embed it)."""
        overhead = self._overhead(self.model_prompts.text(prompt_name))
        limit = self.backend.max_input_tokens
        if limit - overhead < MIN_WINDOW_TOKENS:
            raise InvalidInput(f"the prompt leaves {limit - overhead} of the model's {limit} tokens for the text; "
                               f"windows need at least {MIN_WINDOW_TOKENS}", field="prompt_name",
                               limit=MIN_WINDOW_TOKENS)
        return limit - overhead, overhead

    @property
    def max_window_overlap(self) -> int:
        """The most tokens a request may ask consecutive windows to share: half the window a text
        has without a prompt (a prompt's shorter window holds the overlap to half its own)."""
        return (self.backend.max_input_tokens - self._overhead("")) // 2

    def _embed_texts(self, texts: Sequence[str], options: EmbedOptions) -> Embedded:
        """``embed`` of texts each cut at the model's window (or refused over it): see ``embed``."""
        mode = self._check_options(options)
        texts = self.model_prompts.apply(texts, options.prompt_name)
        keys = [(self.model_id, mode, options.truncation_direction, text) for text in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        full: dict[str, int | None] = {}
        missing: dict[str, list[int]] = {}
        counted = options.count_tokens or not options.truncate
        for i, (text, hit) in enumerate(zip(texts, self.cache.get_many(keys))):
            if hit is None or (counted and hit[1] is None):  # cached uncounted (TEI): count it now
                missing.setdefault(text, []).append(i)
            else:
                out[i], full[text] = hit
        if not options.truncate:
            self._check_token_limit(full, texts, options.truncation_direction)
        if missing:
            full.update(self._compute_misses(missing, mode, options, counted, out))
        counts = None
        if options.count_tokens:
            limit = self.backend.max_input_tokens
            counts = [min(full[text] or 0, limit) for text in texts]
        return Embedded(self._finish(out, options), counts)

    def _check_options(self, options: EmbedOptions) -> str:
        """The pooling mode to use; ``InvalidInput`` for an option out of range."""
        mode = options.pooling or self.backend.default_pooling
        if mode not in POOLINGS:
            raise InvalidInput(
                f"pooling {mode!r} is not one of {list(POOLINGS)}", field="pooling", limit=list(POOLINGS)
            )
        check_direction(options.truncation_direction)
        dims = options.dimensions
        if dims is not None and not 1 <= dims <= self.dimension:
            raise InvalidInput(f"dimensions must be 1..{self.dimension} (the model's dimension), got {dims}",
                               field="dimensions", limit=self.dimension)
        return mode

    def _compute_misses(self, missing: dict[str, list[int]], mode: str, options: EmbedOptions, counted: bool,
                        out: np.ndarray) -> dict[str, int | None]:
        """Queue the misses for shared forward passes, cache their vectors and put them in place;
        each miss's whole length in tokens (None where it was not tokenised; ``counted``: usage or
        the token limit needs it, so tokenise it even for a backend that tokenises on its side)."""
        truncation = options.truncation_direction if options.truncate else None
        work = [EmbedWork(text, mode, truncation, counted=counted) for text in missing]
        prepared = not (counted or self.backend.takes_token_ids)  # nothing to tokenise (TEI does it)
        futures = self.batcher.submit(work, [self._estimate_tokens(w.text) for w in work], options.max_batch,
                                      prepared=prepared)
        try:
            vectors = np.stack(wait_for(futures, self.settings.request_timeout_s))
        except TooLong as exc:
            raise self._too_long(exc.tokens, missing[exc.text][0], options.truncation_direction) from None
        lengths = {w.text: w.full_tokens for w in work}  # filled in by prepare, before the pass
        self.cache.put_many([(self.model_id, mode, options.truncation_direction, w.text) for w in work], vectors,
                            [lengths[w.text] for w in work])
        for w, row in zip(work, vectors):
            out[missing[w.text]] = row
        return lengths

    def prepare(self, work: list[EmbedWork]) -> list[int | BaseException]:
        """The batcher's preparing step: tokenise, in one call per direction, every waiting text
        that needs it (all, when the backend takes token ids; else those counted), and cost each
        text by its token count (or its length estimate); ``TooLong`` for a text over the limit
        that must not be cut."""
        takes_ids = self.backend.takes_token_ids
        by_direction: dict[str, list[EmbedWork]] = {}
        for w in work:
            if takes_ids or w.counted:
                by_direction.setdefault(w.truncation or "right", []).append(w)
        for direction, items in by_direction.items():
            ids, full = self.tokenizer.tokenize([w.text for w in items], direction)
            for w, row, n in zip(items, ids, full):
                w.ids, w.full_tokens = (row if takes_ids else None), n
        limit = self.backend.max_input_tokens
        costs: list[int | BaseException] = []
        for w in work:
            if w.full_tokens is None:
                costs.append(self._estimate_tokens(w.text))
            elif w.truncation is None and w.full_tokens > limit:
                costs.append(TooLong(w.text, w.full_tokens))
            else:
                costs.append(min(w.full_tokens, limit))
        return costs

    @staticmethod
    def _finish(out: np.ndarray, options: EmbedOptions) -> np.ndarray:
        if options.dimensions is not None:
            out = np.ascontiguousarray(out[:, : options.dimensions])
        return l2_normalize(out) if options.normalize else out

    def _admit(self, texts: Sequence[str]) -> Any:
        """A place in the batch queue for these texts (``Overloaded`` now if there is none), sized
        before tokenising by the length estimate."""
        if not texts:
            return contextlib.nullcontext()
        return self.batcher.admit(len(texts), sum(self._estimate_tokens(t) for t in texts))

    def _estimate_tokens(self, text: str) -> int:
        return estimate_tokens(len(text), self.backend.max_input_tokens)

    def _too_long(self, tokens: int, index: int, direction: str) -> InvalidInput:
        limit = self.backend.max_input_tokens
        kept = "first" if direction == "right" else "last"
        return InvalidInput.for_item(
            index, f"has {tokens} tokens; the model accepts at most {limit}. "
            f"Send truncate=true to embed its {kept} tokens, or split the text.", limit=limit, tokens=tokens)

    def _check_token_limit(self, lengths: dict[str, int | None], texts: Sequence[str], direction: str) -> None:
        """Refuse the first of ``texts`` whose known length is over the model's limit."""
        limit = self.backend.max_input_tokens
        for i, text in enumerate(texts):
            n = lengths.get(text)
            if n is not None and n > limit:
                raise self._too_long(n, i, direction)

    def embed_tokens(self, texts: Sequence[str], *, truncate: bool = True, truncation_direction: str = "right",
                     prompt_name: str | None = None) -> list[np.ndarray]:
        """Each text's token embeddings (not pooled, not normalised; TEI's ``/embed_all``), the
        prompt's tokens included (``prompt_name`` as in ``EmbedOptions``).

        Not cached and not batched with other callers: one forward pass for this request, after
        the same admission and token-limit checks as every other embedding.
        """
        check_direction(truncation_direction)
        texts = self.model_prompts.apply(texts, prompt_name)
        with self._admit(texts):
            ids, full = self.tokenizer.tokenize(texts, truncation_direction)  # once: the backend takes these ids
            if not truncate:
                self._check_token_limit(dict(zip(texts, full)), texts, truncation_direction)
            return self.backend.embed_tokens(texts, truncation_direction if truncate else None, ids)

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True,
                 prompt_name: str | None = None) -> list[list[dict[str, Any]]]:
        """Each text's tokens (id, text, special, start, stop), as the model's tokenizer sees them:
        with the prompt (``prompt_name`` as in ``EmbedOptions``) before it, offsets into the
        prompted text (as TEI's ``/tokenize``)."""
        return self.tokenizer.token_details(self.model_prompts.apply(texts, prompt_name), add_special_tokens)

    def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool = True) -> list[str]:
        """Each id sequence as text, by the model's tokenizer.

        Raises:
            InvalidInput: an id the tokenizer does not know, named by its place (``ids[i][j]``).
        """
        vocab = self.tokenizer.vocab_size
        for i, row in enumerate(ids):
            for j, token_id in enumerate(row):
                if not 0 <= token_id < vocab:
                    raise InvalidInput(f"ids[{i}][{j}]: id {token_id} is not in the tokenizer's vocabulary "
                                       f"(0..{vocab - 1})", field=f"ids[{i}][{j}]", limit=vocab - 1)
        return self.tokenizer.decode(ids, skip_special_tokens)

"""TEI first, the local model when TEI cannot answer: a switch callers do not notice.

A request goes to TEI while its supervisor reports it healthy and the circuit breaker is closed.
When TEI fails for a reason that is not the caller's (``TeiUnavailable``: connection refused,
timeout, 5xx, 429 after retries), the same texts are served by the local backend and the caller
gets a normal answer. A caller's bad input (``InvalidInput``) is passed through and never retried
on the fallback. After ``failure_threshold`` failures in a row the breaker opens: requests go
straight to the local model, and after a cool-down (doubling up to ``max_open_s``) one request
probes TEI again; success closes the breaker.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

import numpy as np
from loguru import logger

from ..errors import InvalidInput
from .protocols import Embedder, ModelService, Reranker, RerankWork, SparseEncoder, SparseWeights, SparseWork
from .tei import TeiUnavailable

T = TypeVar("T")
S = TypeVar("S", bound=ModelService)


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> one half-open probe after a cool-down."""

    def __init__(self, failure_threshold: int = 3, open_s: float = 2.0, max_open_s: float = 60.0) -> None:
        self.failure_threshold = failure_threshold
        self.base_open_s = open_s
        self.max_open_s = max_open_s
        self._open_s = open_s
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "half-open" if time.monotonic() >= self._open_until else "open"

    def allow(self) -> bool:
        """Whether this call may try the guarded service (one probe at a time when half-open)."""
        with self._lock:
            if self._open_until is None:
                return True
            if time.monotonic() < self._open_until or self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            if self._open_until is not None:
                logger.info("circuit to TEI closed again")
            self._failures, self._open_until, self._probing, self._open_s = 0, None, False, self.base_open_s

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.failure_threshold:
                if self._probing:
                    self._open_s = min(self._open_s * 2, self.max_open_s)
                if self._open_until is None:
                    logger.warning("circuit to TEI opened after {} failures", self._failures)
                self._open_until = time.monotonic() + self._open_s
                self._probing = False


class FailoverService(Generic[S]):
    """TEI first, a local service of the same kind when TEI cannot answer (see module docstring).

    Generic over the kind of service: ``FailoverEmbedder`` and ``FailoverReranker`` add only the
    methods of their kind, each a call of ``_serve``.
    """

    takes_token_ids = False  # TEI tokenises on its side, and the local model tokenises what it gets without ids

    def __init__(self, primary: S, fallback: S, supervisor: Any, breaker: CircuitBreaker | None = None) -> None:
        self.primary = primary
        self.fallback = fallback
        self.supervisor = supervisor
        self.breaker = breaker or CircuitBreaker()
        self.model_id = fallback.model_id
        # The engine checks token limits with the local tokenizer, so it uses the local limit.
        self.max_input_tokens = fallback.max_input_tokens
        self.served = {"tei": 0, "local": 0}  # items, by who served them
        self.failovers = 0  # TEI calls that failed over to the local model
        self._lock = threading.Lock()

    @property
    def serving_tei(self) -> bool:
        return self.supervisor.healthy and self.breaker.state == "closed"

    @property
    def kind(self) -> str:
        return "tei" if self.serving_tei else "local"

    @property
    def runtime(self) -> str:
        return self.fallback.runtime

    def _serve(self, n: int, on_tei: Callable[[S], T], on_local: Callable[[S], T]) -> T:
        """TEI's answer when it can give one, else the local model's (see module docstring)."""
        if self.supervisor.healthy and self.breaker.allow():
            try:
                result = on_tei(self.primary)
            except InvalidInput:
                self.breaker.record_success()  # TEI answered; the input was wrong
                raise
            except TeiUnavailable as exc:
                self.breaker.record_failure()
                self._failed_over()
                logger.warning("TEI ({}) failed ({}); serving {} items from the local model", self.model_id, exc, n)
            except Exception as exc:  # a TEI answer we could not use is TEI's failure, not the caller's
                self.breaker.record_failure()
                self._failed_over()
                logger.opt(exception=exc).error(
                    "unexpected TEI ({}) failure; serving {} items locally", self.model_id, n
                )
            else:
                self.breaker.record_success()
                self._count("tei", n)
                return result
        result = on_local(self.fallback)
        self._count("local", n)
        return result

    def _failed_over(self) -> None:
        with self._lock:
            self.failovers += 1

    def _count(self, which: str, n: int) -> None:
        with self._lock:
            self.served[which] += n

    def is_healthy(self) -> bool:
        return True  # the local model always answers

    def status(self) -> dict[str, Any]:
        """TEI's state for /info and /health (``serving``: TEI answers requests now)."""
        return {
            "url": self.primary.base_url,
            "pid": self.supervisor.pid,
            "healthy": self.supervisor.healthy,
            "serving": self.serving_tei,
            "circuit": self.breaker.state,
            "restarts": self.supervisor.restarts,
            "served_texts": dict(self.served),
            "failovers": self.failovers,
            "version": self.primary.info.get("version"),
        }

    def close(self) -> None:
        self.supervisor.stop()
        self.primary.close()
        self.fallback.close()


class FailoverEmbedder(FailoverService[Embedder]):
    """An ``Embedder``: ``TeiBackend`` first, ``LocalBackend`` behind it."""

    def __init__(self, primary: Embedder, fallback: Embedder, supervisor: Any,
                 breaker: CircuitBreaker | None = None) -> None:
        super().__init__(primary, fallback, supervisor, breaker)
        self.dimension = fallback.dimension
        self.default_pooling = fallback.default_pooling

    def embed(self, texts: Sequence[str], poolings: Sequence[str], truncations: Sequence[str | None],
              token_ids: Sequence[Sequence[int] | None] | None = None) -> np.ndarray:
        return self._serve(len(texts), lambda b: b.embed(texts, poolings, truncations),
                           lambda b: b.embed(texts, poolings, truncations, token_ids))

    def embed_tokens(self, texts: Sequence[str], truncation: str | None,
                     token_ids: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        return self._serve(len(texts), lambda b: b.embed_tokens(texts, truncation),
                           lambda b: b.embed_tokens(texts, truncation, token_ids))


class FailoverReranker(FailoverService[Reranker]):
    """A ``Reranker``: ``TeiReranker`` first, ``LocalReranker`` behind it."""

    def score(self, work: Sequence[RerankWork]) -> np.ndarray:
        """Raw logits for ``work``: TEI's, else the local model's."""
        return self._serve(len(work), lambda b: b.score(work), lambda b: b.score(work))


class FailoverSparseEncoder(FailoverService[SparseEncoder]):
    """A ``SparseEncoder``: ``TeiSparseEncoder`` first, ``LocalSparseEncoder`` behind it."""

    def __init__(self, primary: SparseEncoder, fallback: SparseEncoder, supervisor: Any,
                 breaker: CircuitBreaker | None = None) -> None:
        super().__init__(primary, fallback, supervisor, breaker)
        self.vocab_size = fallback.vocab_size

    def encode(self, work: Sequence[SparseWork]) -> list[SparseWeights]:
        """Each text's non-zero weights: TEI's, else the local model's."""
        return self._serve(len(work), lambda b: b.encode(work), lambda b: b.encode(work))

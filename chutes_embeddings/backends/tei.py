"""The TEI backends: the engine's forward passes served by a TEI server over loopback.

``TeiBackend`` embeds through an embedding model's TEI; ``TeiReranker`` scores query-document pairs
through a reranker's TEI (``/rerank`` with ``raw_scores``: the engine applies the activation);
``TeiSparseEncoder`` encodes through a SPLADE model's TEI (``--pooling splade``, ``/embed_sparse``);
all share ``TeiClient``'s HTTP, batching and error mapping.

Cords run in worker threads with throwaway event loops, so this uses one shared synchronous
connection pool: urllib3's, whose request costs about a third of an ``httpx.Client``'s (every
request to the service pays it in front of TEI: docs/benchmarks.md, "The cost of one request").
The model's own pooling goes through ``/embed`` (``normalize=false``: the
engine normalises); any other pooling through ``/embed_all``, whose per-token output is pooled by
``vectors.pool`` exactly as the local backend pools. Requests are split to TEI's
``max_client_batch_size`` (read from ``/info``) and to its payload limit, and reassembled in
order. TEI's errors are mapped here and nowhere else:

- the caller's input (400 Empty, 413/422 Validation or Tokenizer) -> ``InvalidInput``, never retried;
- 429 Overloaded -> retried briefly, then ``TeiUnavailable``;
- everything else (connection refused, timeout, 424, 5xx, plain-text framework errors) -> ``TeiUnavailable``,
  which the failover backend answers from the local model.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import orjson
import urllib3
from loguru import logger
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ..engine.vectors import pad_token_embeddings, pool
from ..errors import BackendUnavailable, InvalidInput
from .protocols import RerankWork, SparseWeights, SparseWork

# TEI refuses bodies over 2,000,000 bytes (--payload-limit); stay well under it.
MAX_PAYLOAD_BYTES = 1_500_000
_CALLER_ERRORS = {"Validation", "Tokenizer", "Empty"}
_JSON = {"Content-Type": "application/json"}
POOL_CONNECTIONS = 16  # kept open to TEI: the batcher's passes in flight, health checks, /embed_all


class TeiUnavailable(BackendUnavailable):
    """TEI could not serve a request for a reason that is not the caller's input."""


class _TeiOverloaded(TeiUnavailable):
    """TEI answered 429 (retried a few times before giving up)."""


def map_error(status: int, content: bytes) -> Exception:
    """The service error for a TEI error response, from its status and body (see module docstring)."""
    try:
        body = orjson.loads(content)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "error_type" not in body:
        # axum's plain-text rejections (bad JSON, wrong shape, payload, content type): our request was wrong
        text = content[:200].decode("utf-8", "replace")
        logger.error("TEI rejected a request it could not parse ({}): {}", status, text)
        return TeiUnavailable(f"TEI answered {status}: {text}")
    kind, message = str(body.get("error_type")), str(body.get("error", ""))
    if status in (400, 413, 422) and kind in _CALLER_ERRORS:
        return InvalidInput(f"the model server refused the input: {message}", tei_error_type=kind)
    if status == 429:
        return _TeiOverloaded(f"TEI is overloaded: {message}")
    return TeiUnavailable(f"TEI answered {status} {kind}: {message}")


def _truncation_fields(truncation: str | None) -> dict[str, Any]:
    """TEI's request fields for a truncation (its enum is capitalised: Right, Left)."""
    if truncation is None:
        return {"truncate": False}
    return {"truncate": True, "truncation_direction": truncation.capitalize()}


class TeiClient:
    """One TEI server over loopback: requests, retries on 429, error mapping, batch caps."""

    kind = "tei"
    runtime = "tei"
    takes_token_ids = False  # TEI tokenises on its side

    def __init__(self, base_url: str, *, model_id: str, max_input_tokens: int, timeout_s: float = 30.0) -> None:
        self.base_url = base_url
        self.model_id = model_id
        self.max_input_tokens = max_input_tokens
        self._http = urllib3.connection_from_url(
            base_url, maxsize=POOL_CONNECTIONS, block=False, retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=timeout_s),
        )
        # built once: tenacity keeps its state per thread, so one object serves every caller
        self._retrying = Retrying(retry=retry_if_exception_type(_TeiOverloaded), stop=stop_after_attempt(3),
                                  wait=wait_exponential(multiplier=0.05, max=0.5), reraise=True)
        self._max_client_batch: int | None = None
        self.info: dict[str, Any] = {}

    def refresh_info(self) -> dict[str, Any]:
        """Read TEI's /info (client batch cap, token limit, version)."""
        content = self._request("GET", "/info")
        try:
            info = orjson.loads(content)
            max_client_batch = int(info.get("max_client_batch_size") or 32)
            tei_limit = int(info.get("max_input_length") or self.max_input_tokens)
        except (ValueError, TypeError, AttributeError) as exc:
            raise TeiUnavailable(f"TEI /info answered something this service cannot read: {exc}") from exc
        self.info, self._max_client_batch = info, max_client_batch
        if tei_limit != self.max_input_tokens:
            logger.warning("TEI truncates at {} tokens and the local model at {}: long texts may differ between "
                           "backends", tei_limit, self.max_input_tokens)
        return self.info

    def is_healthy(self) -> bool:
        try:
            return self._http.request("GET", "/health").status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def status(self) -> dict[str, Any]:
        """This TEI's address and version (a ``FailoverBackend`` adds its supervision)."""
        return {"url": self.base_url, "serving": True, "version": self.info.get("version")}

    def close(self) -> None:
        self._http.close()

    def _chunks(self, texts: list[str]) -> list[slice]:
        """Slices of at most ``max_client_batch_size`` texts and ``MAX_PAYLOAD_BYTES`` of text each."""
        cap = self._max_client_batch or 32
        slices, start, size = [], 0, 0
        for i, text in enumerate(texts):
            length = len(json.dumps(text))
            if i > start and (i - start >= cap or size + length > MAX_PAYLOAD_BYTES):
                slices.append(slice(start, i))
                start, size = i, 0
            size += length
        slices.append(slice(start, len(texts)))
        return slices

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload``, its JSON answer parsed; a 429 is retried a few times."""
        content = self._retrying(self._request, "POST", path, orjson.dumps(payload))
        try:
            # orjson: 10x faster than the standard parser on float arrays (9 against 115 us
            # for one 384-float vector), and every TEI answer on the hot path is one
            return orjson.loads(content)
        except ValueError as exc:
            raise TeiUnavailable(f"TEI {path} answered with a body that is not JSON") from exc

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One request to TEI: its body on success, the mapped service error otherwise."""
        try:
            response = self._http.urlopen(method, path, body=body, headers=_JSON if body is not None else None,
                                          preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise TeiUnavailable(f"TEI {method} {path} failed: {type(exc).__name__}") from exc
        if response.status >= 400:
            raise map_error(response.status, response.data)
        return response.data


class TeiBackend(TeiClient):
    """The embedding ``Backend`` over a running TEI server (see module docstring)."""

    def __init__(self, base_url: str, *, model_id: str, dimension: int, max_input_tokens: int,
                 default_pooling: str, timeout_s: float = 30.0) -> None:
        super().__init__(base_url, model_id=model_id, max_input_tokens=max_input_tokens, timeout_s=timeout_s)
        self.dimension = dimension
        self.default_pooling = default_pooling

    def embed(self, texts: Sequence[str], poolings: Sequence[str], truncations: Sequence[str | None],
              token_ids: Sequence[Sequence[int] | None] | None = None) -> np.ndarray:
        """TEI tokenises on its side: ``token_ids`` (the local tokenizer's) are not sent."""
        if self._max_client_batch is None:
            self.refresh_info()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, (mode, truncation) in enumerate(zip(poolings, truncations)):
            groups.setdefault((mode, truncation), []).append(i)
        for (mode, truncation), rows in groups.items():
            for chunk in self._chunks([texts[i] for i in rows]):
                idx = rows[chunk.start : chunk.stop]
                part = [texts[i] for i in idx]
                if mode == self.default_pooling:
                    body = {"inputs": part, "normalize": False, **_truncation_fields(truncation)}
                    out[idx] = np.asarray(self._post("/embed", body), dtype=np.float32)
                else:
                    hidden, mask = pad_token_embeddings(self._embed_all(part, truncation))
                    out[idx] = pool(hidden, mask, mode)
        return out

    def embed_tokens(self, texts: Sequence[str], truncation: str | None,
                     token_ids: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        """TEI tokenises on its side: ``token_ids`` are not sent."""
        if self._max_client_batch is None:
            self.refresh_info()
        out: list[np.ndarray] = []
        for chunk in self._chunks(list(texts)):
            out += self._embed_all(list(texts[chunk]), truncation)
        return out

    def _embed_all(self, texts: list[str], truncation: str | None) -> list[np.ndarray]:
        tokens = self._post("/embed_all", {"inputs": texts, **_truncation_fields(truncation)})
        return [np.asarray(t, dtype=np.float32) for t in tokens]


class TeiReranker(TeiClient):
    """Scores pairs through a reranker's TEI ``/rerank`` (one call per query and cut; TEI
    tokenises on its side, so the local tokenizer's ids are not sent)."""

    def score(self, work: Sequence[RerankWork]) -> np.ndarray:
        """Raw logits (``raw_scores``), one per pair of ``work`` (``RerankWork``), in order."""
        if self._max_client_batch is None:
            self.refresh_info()
        out = np.full(len(work), np.nan, dtype=np.float32)
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, w in enumerate(work):
            groups.setdefault((w.query, w.truncation), []).append(i)
        for (query, truncation), rows in groups.items():
            for chunk in self._chunks([work[i].document for i in rows]):
                idx = rows[chunk.start : chunk.stop]
                body = {"query": query, "texts": [work[i].document for i in idx], "raw_scores": True,
                        **_truncation_fields(truncation)}
                ranked = self._post("/rerank", body)
                if not isinstance(ranked, list) or len(ranked) != len(idx):
                    raise TeiUnavailable(f"TEI /rerank answered {type(ranked).__name__} for {len(idx)} texts")
                for result in ranked:
                    out[idx[int(result["index"])]] = float(result["score"])
        if np.isnan(out).any():
            raise TeiUnavailable("TEI /rerank left some texts without a score")
        return out


class TeiSparseEncoder(TeiClient):
    """Encodes texts through a SPLADE model's TEI ``/embed_sparse`` (TEI tokenises on its side, so
    the local tokenizer's ids are not sent)."""

    def __init__(self, base_url: str, *, model_id: str, max_input_tokens: int, vocab_size: int,
                 timeout_s: float = 30.0) -> None:
        super().__init__(base_url, model_id=model_id, max_input_tokens=max_input_tokens, timeout_s=timeout_s)
        self.vocab_size = vocab_size

    def encode(self, work: Sequence[SparseWork]) -> list[SparseWeights]:
        """Each text's non-zero weights (TEI's ``[{index, value}]`` per text), in order."""
        if self._max_client_batch is None:
            self.refresh_info()
        out: list[SparseWeights | None] = [None] * len(work)
        groups: dict[str | None, list[int]] = {}
        for i, w in enumerate(work):
            groups.setdefault(w.truncation, []).append(i)
        for truncation, rows in groups.items():
            for chunk in self._chunks([work[i].text for i in rows]):
                idx = rows[chunk.start : chunk.stop]
                answer = self._post("/embed_sparse", {"inputs": [work[i].text for i in idx],
                                                      **_truncation_fields(truncation)})
                if not isinstance(answer, list) or len(answer) != len(idx):
                    raise TeiUnavailable(f"TEI /embed_sparse answered {type(answer).__name__} for {len(idx)} texts")
                for i, pairs in zip(idx, answer):
                    out[i] = self._weights(pairs)
        return out  # type: ignore[return-value]  # every slot filled above

    def _weights(self, pairs: Any) -> SparseWeights:
        """TEI's ``[{index, value}]`` as ascending indices and their (positive) values."""
        try:
            indices = np.asarray([int(p["index"]) for p in pairs], dtype=np.int64)
            values = np.asarray([float(p["value"]) for p in pairs], dtype=np.float32)
        except (TypeError, KeyError, ValueError) as exc:
            raise TeiUnavailable(f"TEI /embed_sparse answered a vector this service cannot read: {exc}") from exc
        order = np.argsort(indices, kind="stable")
        indices, values = indices[order], values[order]
        keep = values > 0
        return SparseWeights(indices[keep], values[keep])

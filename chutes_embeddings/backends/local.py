"""The local backend: a sentence-transformers model run in this process.

The model is loaded once. Its tokenizer and transformer are driven directly so that one forward
pass yields token embeddings, which are pooled by ``vectors.pool`` with whatever mode each text
asked for; for the model's own pooling this equals ``SentenceTransformer.encode``. The forward
pass itself is pluggable (``Runner``): torch here, ONNX Runtime in ``backends/onnx.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from loguru import logger

from ..engine.vectors import POOLINGS, ST_POOLING_NAMES, pool_each
from ..settings import PACKAGED_MODEL_HUB_ID, Settings, default_model

_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


_FORWARD_LOCKS: dict[str, threading.Lock] = {}
_FORWARD_LOCKS_GUARD = threading.Lock()


# Building a torch model (transformers initialises weights on the "meta" device by patching torch
# process-wide) and exporting one to ONNX (the tracer's and warnings' global state) are not safe in
# two threads at once: models that load side by side take turns here (a model built beside another
# one got meta tensors: "Cannot copy out of meta tensor"). Their other start-up work overlaps.
MODEL_BUILD_LOCK = threading.RLock()


def forward_lock(device: str) -> threading.Lock:
    """The lock every local forward pass on ``device`` holds, the embedder's and the reranker's
    alike: each runtime is sized to all the cores, so two passes at once would only fight for them."""
    with _FORWARD_LOCKS_GUARD:
        return _FORWARD_LOCKS.setdefault(device, threading.Lock())


def pad_inputs(tokenizer: Any, pad_token_id: int, ids: Sequence[Sequence[int]],
               token_types: Sequence[Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Rows of token ids as a model's padded int64 inputs (on the tokenizer's padding side), with
    ``token_type_ids`` when the model takes them (zeros, or ``token_types`` for text pairs)."""
    longest = max(len(x) for x in ids)
    input_ids = np.full((len(ids), longest), pad_token_id, dtype=np.int64)
    types = np.zeros((len(ids), longest), dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for row, seq in enumerate(ids):
        cols = slice(longest - len(seq), longest) if left else slice(0, len(seq))
        input_ids[row, cols] = seq
        mask[row, cols] = 1
        if token_types is not None:
            types[row, cols] = token_types[row]
    encoded = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in tokenizer.model_input_names:
        encoded["token_type_ids"] = types
    return encoded


class Runner(Protocol):
    """Runs the transformer on tokenised input and returns (batch, tokens, dim) hidden states."""

    name: str

    def __call__(self, encoded: dict[str, np.ndarray]) -> np.ndarray: ...


class HFTokenizer:
    """What the engine asks of a loaded model's Hugging Face tokenizer (the ``Tokenizer`` Protocol),
    shared by every local model that tokenises for a service: the embedder's and the sparse
    encoder's. A subclass sets ``tokenizer``, ``tokenizer_lock``, ``max_input_tokens`` and
    ``pad_token_id``."""

    tokenizer: Any
    tokenizer_lock: threading.Lock
    max_input_tokens: int
    pad_token_id: int

    def tokenize(self, texts: Sequence[str], direction: str = "right") -> tuple[list[list[int]], list[int]]:
        """Tokenise each text once: (its ids cut at the model's limit, its full token count).

        The ids are what the forward pass takes (special tokens included); cutting keeps the
        leading and trailing special tokens and drops content from the end (``direction="right"``,
        exactly as the tokenizer's own ``truncation=True``) or from the start (``"left"``). The
        full count is what ``truncate=false`` checks.
        """
        with self.tokenizer_lock:
            enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False,
                                 return_special_tokens_mask=True, return_attention_mask=False,
                                 return_token_type_ids=False)
        limit = self.max_input_tokens
        ids_out: list[list[int]] = []
        counts: list[int] = []
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            counts.append(len(ids))
            if len(ids) > limit:
                head = next((i for i, s in enumerate(special) if not s), len(special))
                tail = next((i for i, s in enumerate(reversed(special)) if not s), len(special))
                keep = limit - head - tail
                content = ids[head : len(ids) - tail]
                content = content[:keep] if direction == "right" else content[len(content) - keep :]
                ids = ids[:head] + content + ids[len(ids) - tail :]
            ids_out.append(ids)
        return ids_out, counts

    def token_details(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[dict[str, object]]]:
        """Each text's tokens as TEI's ``/tokenize`` reports them: id, text, special, start, stop
        (character offsets into the text; None for special tokens)."""
        with self.tokenizer_lock:
            enc = self.tokenizer(list(texts), add_special_tokens=add_special_tokens, truncation=False, verbose=False,
                                 return_special_tokens_mask=True, return_offsets_mapping=True,
                                 return_attention_mask=False, return_token_type_ids=False)
            names = [self.tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]]
        out = []
        for text, ids, special, offsets, tokens in zip(texts, enc["input_ids"], enc["special_tokens_mask"],
                                                       enc["offset_mapping"], names):
            out.append([
                {"id": int(i), "text": token if sp else text[a:b], "special": bool(sp),
                 "start": None if sp else int(a), "stop": None if sp else int(b)}
                for i, sp, (a, b), token in zip(ids, special, offsets, tokens)
            ])
        return out

    @property
    def vocab_size(self) -> int:
        """How many ids the tokenizer knows (added tokens included)."""
        return len(self.tokenizer)

    def decode(self, ids: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        """Each id sequence as text, as TEI's ``/decode`` gives it."""
        with self.tokenizer_lock:
            return self.tokenizer.batch_decode([list(row) for row in ids], skip_special_tokens=skip_special_tokens)

    def pad(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Token ids of several texts as the model's padded int64 inputs."""
        return pad_inputs(self.tokenizer, self.pad_token_id, ids)

    def encode_inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenise, padded to the longest and truncated at the model's limit, as int64 arrays."""
        return self.pad(self.tokenize(texts)[0])


class LoadedModel(HFTokenizer):
    """A sentence-transformers model with what the engine needs from it, loaded once.

    Raises:
        ValueError: the model has modules after pooling (e.g. Dense) whose output this service
            could not reproduce for other pooling modes.
    """

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        local_dir = Path(settings.model).is_dir()
        device = resolve_device(device or settings.device)
        self.st = SentenceTransformer(
            settings.model, device=device, revision=settings.model_revision, local_files_only=local_dir
        )
        names = [type(module).__name__ for module in self.st]
        if not names or names[0] != "Transformer" or any(n not in _SUPPORTED_MODULES for n in names):
            raise ValueError(f"unsupported module stack {names}: expected Transformer, Pooling[, Normalize]")
        st_pooling = _pooling_mode(self.st[1]) if len(names) > 1 and names[1] == "Pooling" else "cls"
        if not isinstance(st_pooling, str):
            raise ValueError(f"model combines poolings {st_pooling}; only one pooling mode is supported")
        self.default_pooling = ST_POOLING_NAMES.get(st_pooling, st_pooling)
        if self.default_pooling not in POOLINGS:
            raise ValueError(f"model pooling {st_pooling!r} is not one of {POOLINGS}")
        self.device = device
        self.tokenizer = self.st.tokenizer
        self.transformer = self.st[0].auto_model
        self.max_input_tokens = int(self.st.max_seq_length)
        dimension = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.path = settings.model
        self.model_id = model_display_name(settings.model)
        # The prompts of its sentence-transformers config; the engine prepends them (engine/prompts.py).
        self.prompts: dict[str, str] = dict(self.st.prompts or {})
        self.default_prompt_name: str | None = self.st.default_prompt_name
        if self.prompts and len(names) > 1 and getattr(self.st[1], "include_prompt", True) is False:
            logger.warning("{}'s pooling leaves the prompt's tokens out; this service pools them like the "
                           "text's (as TEI does), so prompted vectors differ from sentence-transformers'",
                           self.model_id)
        # HF fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self.tokenizer_lock = threading.Lock()
        self.pad_token_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)


def _pooling_mode(module: object) -> str | tuple[str, ...]:
    """The Pooling module's mode (``pooling_mode`` in sentence-transformers 6, a method before)."""
    mode = getattr(module, "pooling_mode", None)
    if mode is None and hasattr(module, "get_pooling_mode_str"):
        mode = module.get_pooling_mode_str()
    return mode if mode is not None else "mean"


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_display_name(model: str) -> str:
    """The name callers see: the hub id for the packaged model, else what was configured."""
    if model == default_model():
        return PACKAGED_MODEL_HUB_ID
    return model


class TorchRunner:
    """The transformer's forward pass in torch (CPU or CUDA)."""

    def __init__(self, model: LoadedModel, threads: int = 0) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = model
        self.name = f"torch-{model.device}"

    def __call__(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        inputs = {k: torch.from_numpy(v).to(self._model.device) for k, v in encoded.items()}
        with torch.inference_mode():
            hidden = self._model.transformer(**inputs).last_hidden_state
        return hidden.float().cpu().numpy()


class LocalBackend:
    """Backend over a ``LoadedModel`` and a ``Runner`` (see module docstring)."""

    kind = "local"
    takes_token_ids = True

    def __init__(self, model: LoadedModel, runner: Runner) -> None:
        self.model = model
        self.runner = runner
        self.runtime = runner.name
        self.model_id = model.model_id
        self.dimension = model.dimension
        self.max_input_tokens = model.max_input_tokens
        self.default_pooling = model.default_pooling
        self._lock = forward_lock(model.device)  # one forward pass at a time (see forward_lock)

    def embed(self, texts: Sequence[str], poolings: Sequence[str], truncations: Sequence[str | None] = (),
              token_ids: Sequence[Sequence[int] | None] | None = None) -> np.ndarray:
        # the engine has already refused texts over this model's limit that must not be cut
        ids = list(token_ids) if token_ids is not None else [None] * len(texts)
        directions = list(truncations) or ["right"] * len(texts)
        for direction in {d or "right" for i, d in enumerate(directions) if ids[i] is None}:
            todo = [i for i, x in enumerate(ids) if x is None and (directions[i] or "right") == direction]
            for i, x in zip(todo, self.model.tokenize([texts[i] for i in todo], direction)[0]):
                ids[i] = x  # only what the engine did not tokenise already
        encoded = self.model.pad(ids)  # type: ignore[arg-type]
        with self._lock:
            hidden = self.runner(encoded)
        return pool_each(hidden, encoded["attention_mask"], poolings)

    def embed_tokens(self, texts: Sequence[str], truncation: str | None,
                     token_ids: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        ids = token_ids if token_ids is not None else self.model.tokenize(texts, truncation or "right")[0]
        encoded = self.model.pad(ids)
        with self._lock:
            hidden = self.runner(encoded)
        mask = encoded["attention_mask"].astype(bool)
        return [np.asarray(hidden[i][mask[i]], dtype=np.float32) for i in range(len(texts))]

    def is_healthy(self) -> bool:
        return True

    def status(self) -> None:
        return None  # no TEI behind a model in this process

    def close(self) -> None:
        logger.debug("local backend closed")


def build_local_backend(settings: Settings, model: LoadedModel) -> LocalBackend:
    """The local backend for ``settings.backend``.

    ``torch``: torch on the model's device. ``onnx``: ONNX Runtime (CPU), torch if the export
    fails verification. ``auto``: ONNX fp32 on the CPU when it verifies (lossless and faster),
    torch on CUDA.
    """
    torch_runner = TorchRunner(model, settings.torch_threads)
    wants_onnx = settings.backend == "onnx" or (settings.backend == "auto" and model.device == "cpu")
    if wants_onnx:
        from .onnx import build_onnx_runner

        onnx_runner = build_onnx_runner(model, settings.model_cache_path, settings.model_revision, settings.quantize,
                                        settings.torch_threads, torch_runner)
        if onnx_runner is not None:
            return LocalBackend(model, onnx_runner)
    return LocalBackend(model, torch_runner)

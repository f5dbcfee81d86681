"""The local reranker: a sentence-transformers ``CrossEncoder`` run in this process.

A cross-encoder reads a query and a document together and gives the pair one relevance logit.
The model is loaded through ``CrossEncoder`` (so whatever loads there loads here) and driven
directly: pairs are tokenised once by ``LoadedReranker.tokenize_pairs`` exactly as
``CrossEncoder.predict`` tokenises them (``tokenizer(query, document, truncation=True,
max_length=max_length)``), padded, and run through the sequence-classification model; the
backend returns raw logits and the engine applies the model's activation (``CrossEncoder``'s
``activation_fn``, Sigmoid for one-label models unless the model's config says otherwise).

The forward pass runs in torch, or (on the CPU with ``EMBEDDINGS_BACKEND`` ``auto`` or ``onnx``)
in ONNX Runtime from an export made and cached as the embedder's is, used only when its logits
agree with torch's within ``ONNX_MAX_LOGIT_DIFF`` on padded pairs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from loguru import logger

from ..settings import Settings
from .local import forward_lock, model_display_name, pad_inputs, resolve_device
from .protocols import PairIds, RerankWork

ONNX_MAX_LOGIT_DIFF = 1e-4
VERIFY_PAIRS = [
    ("a short query", "A short one."),
    ("what does the attention mask do in a padded batch?",
     "A considerably longer document, so that the batch has padding in it and attention masks matter."),
    ("Ünïcödé 🚀", "numbers 12345 and x"),
]


class LoadedReranker:
    """A one-label cross-encoder with what the engine needs from it, loaded once.

    Args:
        model: a Hugging Face id or a local folder.
        device: ``cpu``, ``cuda`` or ``auto``.
        revision: the hub revision, for hub ids.

    Raises:
        ValueError: the model is not a one-label sequence classifier (TEI refuses those too).
    """

    def __init__(self, model: str, device: str = "cpu", revision: str | None = None) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self.device = resolve_device(device)
        self.ce = CrossEncoder(model, device=self.device, revision=revision, local_files_only=Path(model).is_dir())
        if int(self.ce.num_labels) != 1:
            raise ValueError(f"reranker {model!r} has {self.ce.num_labels} labels; a reranker gives one score per pair")
        self.network = self.ce[0].auto_model.eval()
        self.tokenizer = self.ce.tokenizer
        # what CrossEncoder cuts pairs at, never past the position embeddings (a tokenizer's own
        # model_max_length can be a huge placeholder)
        positions = getattr(self.network.config, "max_position_embeddings", None) or 512
        self.max_input_tokens = int(min(self.ce.max_seq_length or positions, positions))
        activation = self.ce.activation_fn
        self.activation_name = type(activation).__name__
        self._activation = activation
        self._torch = torch
        self.model_id = model_display_name(model)
        self.path = model
        self.pad_token_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self.tokenizer_lock = threading.Lock()  # HF fast tokenizers are not safe across threads

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The model's activation over raw logits, as ``CrossEncoder.predict`` applies it."""
        with self._torch.inference_mode():
            return self._activation(self._torch.from_numpy(np.asarray(logits, dtype=np.float32))).numpy()

    def tokenize_pairs(self, query: str, documents: Sequence[str], direction: str = "right",
                       full_lengths: bool = False) -> tuple[list[PairIds], list[int] | None]:
        """Each (query, document) pair's model inputs cut at the model's limit, and (with
        ``full_lengths``, for ``truncate=false`` checks) each pair's length before any cut.

        Cutting is the tokenizer's own ``longest_first`` (what ``CrossEncoder.predict`` does);
        ``direction="left"`` cuts from the start of the longer text instead of its end.
        """
        queries = [query] * len(documents)
        full = None
        with self.tokenizer_lock:
            if full_lengths:
                full = [len(ids) for ids in self.tokenizer(queries, list(documents), truncation=False, verbose=False,
                                                           return_attention_mask=False,
                                                           return_token_type_ids=False)["input_ids"]]
            side = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = direction  # safe: every use of this tokenizer holds the lock
            try:
                enc = self.tokenizer(queries, list(documents), truncation=True, max_length=self.max_input_tokens,
                                     return_attention_mask=False, return_token_type_ids=True)
            finally:
                self.tokenizer.truncation_side = side
        pairs = [PairIds(list(ids), list(types)) for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]
        return pairs, full

    def document_token_offsets(self, documents: Sequence[str]) -> list[list[int]]:
        """Each document's token end offsets (characters), without special tokens: where a
        document cut to N tokens ends (``max_tokens_per_doc``)."""
        with self.tokenizer_lock:
            enc = self.tokenizer(list(documents), add_special_tokens=False, truncation=False, verbose=False,
                                 return_offsets_mapping=True, return_attention_mask=False,
                                 return_token_type_ids=False)
        return [[int(end) for _, end in offsets] for offsets in enc["offset_mapping"]]

    def pad(self, pairs: Sequence[PairIds]) -> dict[str, np.ndarray]:
        """Pairs as the model's padded int64 inputs."""
        return pad_inputs(self.tokenizer, self.pad_token_id, [p.input_ids for p in pairs],
                          [p.token_type_ids for p in pairs])

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """One forward pass in torch: a raw logit per pair."""
        torch = self._torch
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in encoded.items()}
        with torch.inference_mode():
            out = self.network(**inputs).logits
        return out[:, 0].float().cpu().numpy()

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """Padded model inputs for (query, document) pairs, cut as ``tokenize_pairs`` cuts."""
        ids: list[PairIds] = []
        for query, document in pairs:
            ids += self.tokenize_pairs(query, [document])[0]
        return self.pad(ids)


class OnnxLogits:
    """A reranker's forward pass in ONNX Runtime (the export's ``logits``, first column)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.name = runner.name

    def __call__(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._runner(encoded), dtype=np.float32)[:, 0]


def build_rerank_runner(
    model: LoadedReranker, settings: Settings
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], str]:
    """The forward pass for ``settings.backend`` and its name: ONNX fp32 on the CPU (``auto``,
    ``onnx``) when the export agrees with torch, else torch."""
    torch_name = f"torch-{model.device}"
    wants_onnx = model.device == "cpu" and settings.backend in ("auto", "onnx")
    if not wants_onnx:
        return model.logits, torch_name
    from .onnx import OnnxRunner, export_module, export_path

    target = export_path(model, settings.model_cache_path, settings.rerank_model_revision, "reranker-fp32")
    try:
        if not target.exists():
            export_module(model.network, model.encode_pairs(VERIFY_PAIRS[:2]), "logits", target)
        runner = OnnxLogits(OnnxRunner(target, settings.torch_threads, "fp32"))
        sample = model.encode_pairs(VERIFY_PAIRS)
        diff = float(np.abs(runner(sample) - model.logits(sample)).max())
        if diff > ONNX_MAX_LOGIT_DIFF:
            logger.warning("reranker's ONNX export disagrees with torch (logits differ by {:.2e}); serving with torch",
                           diff)
            target.unlink(missing_ok=True)
            return model.logits, torch_name
        return runner, runner.name
    except Exception as exc:  # an export that fails must not stop the service: torch still works
        logger.opt(exception=exc).warning("reranker ONNX export or load failed; serving with torch")
        return model.logits, torch_name


class LocalReranker:
    """Scores pairs with a ``LoadedReranker`` in this process (one forward pass at a time)."""

    kind = "local"
    takes_token_ids = True

    def __init__(self, model: LoadedReranker, runner: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None,
                 runtime: str | None = None) -> None:
        self.model = model
        self.runner = runner or model.logits
        self.runtime = runtime or f"torch-{model.device}"
        self.model_id = model.model_id
        self.max_input_tokens = model.max_input_tokens

    def score(self, work: Sequence[RerankWork]) -> np.ndarray:
        """Raw logits, one per pair, in order."""
        encoded = self.model.pad([w.ids for w in work])
        with forward_lock(self.model.device):  # passes would only fight for the cores
            return self.runner(encoded)

    def is_healthy(self) -> bool:
        return True

    def status(self) -> None:
        return None  # no TEI behind a model in this process

    def close(self) -> None:
        logger.debug("local reranker closed")

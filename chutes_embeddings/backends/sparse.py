"""The local sparse encoder: a sentence-transformers ``SparseEncoder`` (SPLADE) run in this process.

A SPLADE model is a masked-language model whose logits over the vocabulary, at every token, are
turned into one weight per vocabulary entry: ``log1p(relu(logit))`` pooled over the tokens (max,
or sum for the first SPLADE). Most weights are zero, so a text becomes a short list of
(vocabulary id, weight) pairs that a lexical index can score by dot product.

The model is loaded through ``SparseEncoder`` (so whatever loads there loads here) and driven
directly: texts are tokenised once by the engine (``HFTokenizer.tokenize``, cut as the model's
tokenizer cuts them), padded, and run through the model's own modules (the fill-mask transformer,
then ``SpladePooling``), which is what ``SparseEncoder.encode`` computes. Only the non-zero weights
leave the forward pass.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from loguru import logger

from .local import HFTokenizer, forward_lock, model_display_name, pad_inputs, resolve_device
from .protocols import SparseWeights, SparseWork

# The transformer is sentence-transformers 6's ``Transformer`` with ``transformer_task="fill-mask"``,
# or the ``MLMTransformer`` that 5.x models (and 6's loading of them) use.
_MLM_MODULES = ("Transformer", "MLMTransformer")


class LoadedSparseEncoder(HFTokenizer):
    """A SPLADE model with what the engine needs from it (its tokenizer too), loaded once.

    Args:
        model: a Hugging Face id or a local folder.
        device: ``cpu``, ``cuda`` or ``auto``.
        revision: the hub revision, for hub ids.

    Raises:
        ValueError: the model is not a fill-mask transformer with SPLADE pooling (TEI answers 424
            for such a model's ``/embed_sparse``).
    """

    def __init__(self, model: str, device: str = "cpu", revision: str | None = None) -> None:
        import torch
        from sentence_transformers import SparseEncoder

        self.device = resolve_device(device)
        self.se = SparseEncoder(model, device=self.device, revision=revision, local_files_only=Path(model).is_dir())
        names = [type(module).__name__ for module in self.se]
        splade = (len(names) == 2 and names[0] in _MLM_MODULES and names[1] == "SpladePooling"
                  and getattr(self.se[0], "transformer_task", "fill-mask") == "fill-mask")
        if not splade:
            raise ValueError(f"sparse model {model!r} has modules {names}; expected a fill-mask Transformer and "
                             "SpladePooling (a SPLADE model)")
        self.se.eval()
        self._torch = torch
        self.tokenizer = self.se.tokenizer
        network = self.se[0].auto_model
        positions = getattr(network.config, "max_position_embeddings", None) or 512
        self.max_input_tokens = int(min(self.se.max_seq_length or positions, positions))
        # the vectors' dimension, the MLM head's width (every index is below it); the tokenizer's own
        # ``vocab_size`` (``HFTokenizer``) can differ by added tokens
        self.dimension = int(network.config.vocab_size)
        self.pooling = f"{self.se[1].pooling_strategy}(log1p({self.se[1].activation_function}))"
        self.model_id = model_display_name(model)
        self.path = model
        self.pad_token_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self.tokenizer_lock = threading.Lock()  # HF fast tokenizers are not safe across threads

    def weights(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One forward pass: a (len(ids), vocab_size) float32 array of SPLADE weights."""
        torch = self._torch
        encoded = pad_inputs(self.tokenizer, self.pad_token_id, ids)
        features = {k: torch.from_numpy(v).to(self.device) for k, v in encoded.items()}
        with torch.inference_mode():
            dense = self.se(features)["sentence_embedding"]
        return dense.float().cpu().numpy()


def nonzero_weights(dense: np.ndarray) -> list[SparseWeights]:
    """Each row's non-zero entries as (ascending int64 indices, float32 values)."""
    out = []
    for row in dense:
        indices = np.flatnonzero(row > 0)
        out.append(SparseWeights(indices.astype(np.int64), row[indices].astype(np.float32)))
    return out


class LocalSparseEncoder:
    """Encodes texts with a ``LoadedSparseEncoder`` in this process (one forward pass at a time)."""

    kind = "local"
    takes_token_ids = True

    def __init__(self, model: LoadedSparseEncoder) -> None:
        self.model = model
        self.runtime = f"torch-{model.device}"
        self.model_id = model.model_id
        self.max_input_tokens = model.max_input_tokens
        self.vocab_size = model.dimension

    def encode(self, work: Sequence[SparseWork]) -> list[SparseWeights]:
        """Each text's non-zero SPLADE weights, from the engine's token ids."""
        with forward_lock(self.model.device):  # passes would only fight for the cores
            dense = self.model.weights([w.ids for w in work])
        return nonzero_weights(dense)

    def is_healthy(self) -> bool:
        return True

    def status(self) -> None:
        return None  # no TEI behind a model in this process

    def close(self) -> None:
        logger.debug("local sparse encoder closed")

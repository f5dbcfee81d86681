"""The TEI stand-in's model: the real weights, served by ONNX Runtime with the model's own fast
tokenizer, so that a stand-in starts in about a second instead of importing torch and
sentence-transformers (20 s on a loaded 2-core runner) at every start and every restart.

The transformer is exported once per model folder (a key of its files' sizes and times) into a
cache folder, under a file lock, by the first stand-in that needs it; that one start imports
torch. The answers are the same model's numbers: ``tests/test_tei.py`` checks them against
``SentenceTransformer.encode`` and ``tests/test_rerank.py`` against ``CrossEncoder.predict``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_folder(model_id: str, revision: str | None) -> Path:
    """The model's files: ``model_id`` itself when it is a folder, else its hub snapshot."""
    if Path(model_id).is_dir():
        return Path(model_id)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, revision=revision))


def _key(folder: Path) -> str:
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = f.stat()
        digest.update(f"{f.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _export(folder: Path, reranker: bool, target: Path) -> None:
    """``torch.onnx.export`` of the transformer's token embeddings (a classifier's logits)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    loader = AutoModelForSequenceClassification if reranker else AutoModel
    network = loader.from_pretrained(folder).eval()
    output = "logits" if reranker else "last_hidden_state"
    sample = AutoTokenizer.from_pretrained(folder)(["a short one", "and a somewhat longer one"], padding=True,
                                                   return_tensors="pt")
    names = [n for n in _INPUTS if n in sample]

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = network

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return getattr(self.inner(**dict(zip(names, tensors))), output)

    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes[output] = {0: "batch"} if reranker else {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about shape-dependent branches
        tmp_file = Path(tmp) / target.name
        torch.onnx.export(Wrapper().eval(), tuple(sample[n] for n in names), str(tmp_file), input_names=names,
                          output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp_file, target)


def exported(folder: Path, reranker: bool, cache: Path) -> Path:
    """The model's ONNX file in ``cache``, exported first when no stand-in has done it yet."""
    cache.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", folder.name)[-40:]
    target = cache / f"standin-{slug}-{_key(folder)}-{'logits' if reranker else 'tokens'}.onnx"
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first starts: one exports, the others wait for it
        if not target.exists():
            _export(folder, reranker, target)
    return target


class StandInModel:
    """Token embeddings (an embedding model) or one logit per pair (a cross-encoder)."""

    def __init__(self, model_id: str, revision: str | None, cache: Path, max_input_length: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = model_folder(model_id, revision)
        config = json.loads((folder / "config.json").read_text())
        self.reranker = any(a.endswith("ForSequenceClassification") for a in config.get("architectures", []))
        self.hidden_size = int(config["hidden_size"])
        self.max_input = max_input_length or self._max_length(folder, config)
        # two tokenizers, because their truncation and padding are state: one cuts and pads for the
        # model (under the lock), the other counts whole texts
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        pad = self._tokenizer_config(folder).get("pad_token") or "[PAD]"
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        self.lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a test tool: one core, as the torch stand-in had
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(exported(folder, self.reranker, cache)), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    @staticmethod
    def _tokenizer_config(folder: Path) -> dict:
        path = folder / "tokenizer_config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _max_length(self, folder: Path, config: dict) -> int:
        """What sentence-transformers cuts at: ``max_seq_length`` of an embedding model, the
        tokenizer's ``model_max_length`` (within the position table) of a cross-encoder."""
        st_config = folder / "sentence_bert_config.json"
        if not self.reranker and st_config.exists():
            return int(json.loads(st_config.read_text())["max_seq_length"])
        limit = int(self._tokenizer_config(folder).get("model_max_length", 512))
        return min(limit, int(config.get("max_position_embeddings", limit)))

    def _encode(self, items: list, direction: str = "right") -> dict[str, np.ndarray]:
        """Model inputs for ``items`` (texts or pairs), cut at ``max_input`` (call under the lock)."""
        self.tokenizer.enable_truncation(self.max_input, direction=direction)
        encodings = self.tokenizer.encode_batch(items)
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        return {n: np.asarray(arrays[n], dtype=np.int64) for n in self.inputs}

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, special tokens included, uncut."""
        return [len(e.ids) for e in self.counter.encode_batch(texts)]

    def token_embeddings(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's token vectors (padding dropped), cut at ``max_input`` tokens."""
        with self.lock:
            enc = self._encode(texts)
            hidden = self.session.run(None, enc)[0]
        mask = enc["attention_mask"].astype(bool)
        return [hidden[i][mask[i]] for i in range(len(texts))]

    def logits(self, query: str, texts: list[str], direction: str) -> np.ndarray:
        """The cross-encoder's raw score of each (query, text) pair, cut from ``direction``."""
        with self.lock:
            enc = self._encode([(query, t) for t in texts], direction)
            return self.session.run(None, enc)[0][:, 0].astype(np.float32)

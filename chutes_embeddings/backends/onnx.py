"""ONNX Runtime for the local backend: export once, verify, then serve every pooling from it.

The transformer is exported with a plain ``torch.onnx.export`` (offline: no hub access; the
``sentence-transformers[onnx]`` route needs optimum, which does not install beside
sentence-transformers 6) into ``<model cache>/<model>-<revision>-fp32.onnx``, where the revision is
the hub revision or, for a local model directory, a hash of its files. Before it is used the
export is checked against torch on inputs with padding (cosine >= 0.9999 per token); a file that
fails is not used and torch serves instead. ``EMBEDDINGS_QUANTIZE=int8`` adds dynamic int8
quantisation (about 2x faster on AVX-512 CPUs, but lossy: cosine to fp32 down to ~0.98), only
when asked for, and refused (fp32 served) if a pooled vector falls below cosine 0.85 (a broken quantisation).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

from ..engine.vectors import pool

if TYPE_CHECKING:  # local.py imports this module when it builds a runner: no circle at import time
    from .local import LoadedModel

OPSET = 17
VERIFY_TEXTS = [
    "A short one.",
    "A considerably longer sentence, so that the batch has padding in it and attention masks matter.",
    "Ünïcödé and emoji 🚀 and numbers 12345",
    "x",
]
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.85  # a guard against a broken quantisation; quality is measured by make bench


def model_revision_key(model: object, revision: str | None) -> str:
    """What identifies the weights: the hub revision, or a hash of a local model's files."""
    if revision:
        return re.sub(r"[^A-Za-z0-9._-]", "_", revision)
    path = Path(model.path)  # type: ignore[attr-defined]
    digest = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = f.stat()
            digest.update(f"{f.relative_to(path)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    else:
        digest.update(str(path).encode())
    return digest.hexdigest()[:16]


class OnnxRunner:
    """Runs an exported transformer with ONNX Runtime on the CPU."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # one forward pass at a time (local.forward_lock): give it the cores, no more
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's idle workers spin for a while after each run by default, holding the cores the
        # request threads need between passes: measured here (2 cores, 16 single-text clients over
        # HTTP) spinning cost 20% of throughput and 10 ms of CPU per one-text request, for no gain
        # in batched throughput (docs/benchmarks.md, "Against Infinity").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.name = f"onnx-{precision}"
        self.path = path

    def __call__(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        return self._session.run(None, {k: encoded[k] for k in self._inputs})[0]


def export(model: LoadedModel, target: Path) -> Path:
    """Export ``model.transformer`` (token embeddings) to ONNX at ``target``."""
    return export_module(model.transformer, model.encode_inputs(VERIFY_TEXTS[:2]), "last_hidden_state", target)


def export_module(network: object, sample: dict[str, np.ndarray], output: str, target: Path) -> Path:
    """Export a Hugging Face model's forward pass to ONNX at ``target``, atomically (temp file,
    then rename), with dynamic batch and token axes; ``output`` names the output it keeps
    (``last_hidden_state`` of an encoder, ``logits`` of a classifier)."""
    import torch

    from .local import MODEL_BUILD_LOCK

    names = list(sample)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return getattr(self.inner(**dict(zip(names, tensors))), output)

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    device = next(network.parameters()).device  # type: ignore[attr-defined]
    with MODEL_BUILD_LOCK, tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_file = Path(tmp) / target.name
        dynamic = {k: {0: "batch", 1: "tokens"} for k in names}
        dynamic[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "tokens"}
        # The tracer warns about shape-dependent Python branches in transformers; the export is
        # checked against torch on padded batches of other shapes before it is used.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Wrapper(network.cpu()).eval(), tuple(torch.from_numpy(sample[k]) for k in names),  # type: ignore[attr-defined]
                str(tmp_file), input_names=names, output_names=[output], dynamic_axes=dynamic,
                opset_version=OPSET, dynamo=False,
            )
        os.replace(tmp_file, target)
    network.to(device)  # type: ignore[attr-defined]  # .cpu() above moved the module itself
    logger.info("exported a model to ONNX in {:.1f}s: {}", time.monotonic() - started, target)
    return target


def quantize(fp32: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of an fp32 export: MatMul weights, per channel.

    Measured here on all-MiniLM-L6-v2 (259 texts, 2 cores): ORT's defaults give 2.05x fp32 speed
    at mean cosine 0.959 (min 0.912); per-channel MatMul-only gives 2.07x at mean 0.992 (min 0.978).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_file = Path(tmp) / target.name
        quantize_dynamic(str(fp32), str(tmp_file), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        os.replace(tmp_file, target)
    return target


def agreement(model: LoadedModel, runner: OnnxRunner, torch_runner: object, pooled: bool = False) -> float:
    """Lowest cosine between ONNX and torch over the verification texts: per token, or per text
    after the model's own pooling (what callers see; the right yardstick for lossy int8)."""
    encoded = model.encode_inputs(VERIFY_TEXTS)
    a, b = runner(encoded), torch_runner(encoded)  # type: ignore[operator]
    mask = encoded["attention_mask"]
    if pooled:
        a, b = pool(a, mask, model.default_pooling), pool(b, mask, model.default_pooling)
    else:
        a, b = a[mask.astype(bool)], b[mask.astype(bool)]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return float(cos.min())


def export_path(model: object, cache_dir: Path, revision: str | None, kind: str) -> Path:
    """Where a model's export lives: ``<cache>/<model>-<revision key>-<kind>.onnx``."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", model.model_id)[-80:]  # type: ignore[attr-defined]
    return cache_dir / f"{slug}-{model_revision_key(model, revision)}-{kind}.onnx"


def build_onnx_runner(model: LoadedModel, cache_dir: Path, revision: str | None, quantization: str,
                      threads: int, torch_runner: object) -> OnnxRunner | None:
    """An ONNX runner for the model, exported/cached/verified; None when it cannot be trusted.

    Args:
        model: the loaded model (its tokenizer and torch transformer).
        cache_dir: where exports are kept.
        revision: the hub revision, if any.
        quantization: "none" or "int8".
        threads: ORT intra-op threads (0: all cores).
        torch_runner: the torch forward pass to verify against.
    """
    fp32 = export_path(model, cache_dir, revision, "fp32")
    try:
        if not fp32.exists():
            export(model, fp32)
        runner = OnnxRunner(fp32, threads, "fp32")
        cos = agreement(model, runner, torch_runner)
        if cos < FP32_MIN_COSINE:
            logger.warning("ONNX export disagrees with torch (min cosine {:.6f}); serving with torch", cos)
            fp32.unlink(missing_ok=True)
            return None
        if quantization == "int8":
            int8 = export_path(model, cache_dir, revision, "int8")
            if not int8.exists():
                quantize(fp32, int8)
            runner = OnnxRunner(int8, threads, "int8")
            cos = agreement(model, runner, torch_runner, pooled=True)
            logger.info("serving int8 ONNX: min text cosine to torch fp32 {:.4f} (lossy by choice)", cos)
            if cos < INT8_MIN_COSINE:
                logger.warning("int8 model too far from fp32 (min cosine {:.4f}); serving fp32 ONNX", cos)
                return OnnxRunner(fp32, threads, "fp32")
        return runner
    except Exception as exc:  # an export that fails must not stop the service: torch still works
        logger.opt(exception=exc).warning("ONNX export or load failed; serving with torch")
        return None

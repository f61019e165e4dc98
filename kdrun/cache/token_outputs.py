"""Teacher-output cache for language models: each token's top-k next-token log-probabilities.

A full next-token distribution is V floats per token (49152 for SmolLM2: 96 KB in fp16), so
the cache keeps, per training token, the teacher's k most likely tokens and their
log-probabilities at temperature 1 (fp16; token ids as uint16 when V <= 65536) plus the log
of the mass outside them. Arrays of shape (sequences, T, k) are memory-mapped and keyed by
content (teacher, data, k), so every cell of a sweep reads the same entry and the teacher
runs once.

How the truncated distribution is served: the step gets dense teacher log-probabilities
(B, T, V) in which the k kept tokens have their exact log-probabilities and the remaining
mass is spread evenly over the other V - k tokens (the maximum-entropy completion given
what was kept; nothing is renormalised over the k tokens, so the row still sums to 1).
Every token-level loss then runs unchanged. It is exact at k = V; at temperature T != 1 the
k kept tokens keep their exact relative odds while the spread remainder is softened as if
its tokens were equally likely. Anshumann et al. (ACL 2025) show that caching top-k
probabilities alone biases the teacher; keeping the rest mass avoids the worst of it.

`teacher.cache`: `auto` caches when every selected loss reads only the teacher's logits;
`on` insists (and says why it cannot); `off` runs the teacher live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kdrun.cache.entry import content_digest, make_once
from kdrun.cache.teachers import data_identity
from kdrun.config.errors import ConfigError
from kdrun.losses import loss_class
from kdrun.losses.tokens import topk_targets
from kdrun.models.frozen import FrozenTeacher
from kdrun.models.output import ModelOutput
from kdrun.tracking.checkpoint import short_reason

log = logging.getLogger(__name__)

FIELDS = ("values", "indices", "rest")
CACHE_MODES = ("auto", "on", "off")


def why_not_cacheable(loss_cfg: Mapping[str, Any]) -> str | None:
    """The reason a top-k cache would not serve the selected losses, or None."""
    for name, cfg in loss_cfg.items():
        cls = loss_class(name)
        if not cls.needs_teacher:
            continue
        extra = [f for f in cls.requires if f != "logits"]
        if extra:
            return f"loss={name} reads the teacher's {', '.join(extra)} (only logits are cached)"
        if getattr(cls, "teacher_targets", False):
            return f"loss={name} trains on teacher generations, which the teacher scores live"
    return None


def use_token_cache(mode: str, loss_cfg: Mapping[str, Any]) -> bool:
    if mode not in CACHE_MODES:
        raise ConfigError(f"teacher.cache={mode}: use auto, on or off")
    if mode == "off":
        return False
    reason = why_not_cacheable(loss_cfg)
    if reason and mode == "on":
        raise ConfigError(f"teacher.cache=on cannot serve this cell: {reason}; or use teacher.cache=auto")
    return reason is None



def token_output_key(teacher_key: str | None, teacher_path: Path, data_cfg: Any, k: int) -> str:
    spec = {"teacher": teacher_key or content_digest(teacher_path), "data": data_identity(data_cfg),
            "k": k, "fields": list(FIELDS), "format": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def dense_logprobs(values: torch.Tensor, indices: torch.Tensor, rest: torch.Tensor,
                   vocab: int) -> torch.Tensor:
    """(B, T, V) log-probabilities: the kept k exact, the rest mass spread over the other V - k."""
    k = values.shape[-1]
    if k == vocab:
        fill = torch.full(values.shape[:2], float("-inf"), device=values.device)
    else:
        fill = rest.float() - math.log(vocab - k)
    dense = fill.unsqueeze(-1).expand(*values.shape[:2], vocab).clone()
    return dense.scatter_(-1, indices.long(), values.float())


class TopKTeacher(FrozenTeacher):
    """Serves a language-model teacher's cached top-k outputs by sequence index."""

    cached = True

    def __init__(self, model: torch.nn.Module, name: str, entry: Path, vocab: int):
        super().__init__(model, name)
        self.entry, self.vocab = entry, vocab
        self.arrays = {f: np.load(entry / f"{f}.npy", mmap_mode="r") for f in FIELDS}

    def __call__(self, batch) -> ModelOutput:
        index = batch.index.cpu().numpy()
        device = batch.x.device
        rows = {f: torch.from_numpy(np.ascontiguousarray(a[index]).astype(
            np.int64 if f == "indices" else np.float32)).to(device) for f, a in self.arrays.items()}
        logits = dense_logprobs(rows["values"], rows["indices"], rows["rest"], self.vocab)
        empty = logits.new_zeros(*logits.shape[:2], 0)
        return ModelOutput(logits=logits, features=[], embedding=empty)


@torch.no_grad()
def _fill(entry: Path, teacher: FrozenTeacher, loader, k: int, vocab: int, device,
          batch_size: int) -> None:
    n, arrays = loader.num_samples, None
    index_type = np.uint16 if vocab <= 65536 else np.int32
    for batch in loader.view_batches(0, batch_size=batch_size):
        logits = teacher(batch.to(device)).logits
        values, indices, rest = topk_targets(logits.float(), k)
        if arrays is None:
            shape = (n, logits.shape[1], k)
            arrays = {"values": np.lib.format.open_memmap(entry / "values.npy", "w+", np.float16, shape),
                      "indices": np.lib.format.open_memmap(entry / "indices.npy", "w+", index_type, shape),
                      "rest": np.lib.format.open_memmap(entry / "rest.npy", "w+", np.float16, shape[:2])}
        rows = batch.index.numpy()
        arrays["values"][rows] = values.cpu().numpy()
        arrays["indices"][rows] = indices.cpu().numpy()
        arrays["rest"][rows] = rest.clamp_min(-60.0).cpu().numpy()  # fp16-safe; exp(-60) ~ 0
    for array in arrays.values():
        array.flush()


def _damage(entry: Path, key: str, samples: int, k: int) -> str | None:
    """Why a finished entry cannot be served (torn by a crash or a full disk), or None."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {f: np.load(entry / f"{f}.npy", mmap_mode="r") for f in FIELDS}
    except (OSError, ValueError, EOFError) as e:
        return short_reason(e)
    if meta != {"key": key, "samples": samples, "k": k}:
        return f"meta.json {meta} is not for this key, {samples} sequences, k={k}"
    for f, array in arrays.items():
        if array.shape[0] != samples or (f != "rest" and array.shape[-1] != k):
            return f"{f}.npy has shape {array.shape}, not ({samples}, T{', ' + str(k) if f != 'rest' else ''})"
    return None


def topk_teacher(teacher: FrozenTeacher, key: str, cache_dir: Path, loader, k: int, vocab: int,
                 device, batch_size: int = 16) -> TopKTeacher:
    """The TopKTeacher for `key`, filling it first when no cell has (a damaged entry is set
    aside as `<entry>.corrupt` and filled again)."""
    entry = Path(cache_dir) / "token_outputs" / key[:24]
    samples = loader.num_samples

    def fill(folder: Path) -> dict:
        log.info("caching the teacher's top-%d tokens for %d sequences in %s", k, samples, entry)
        _fill(folder, teacher, loader, k, vocab, device, batch_size)
        return {"key": key, "samples": samples, "k": k}

    make_once(entry, lambda e: _damage(e, key, samples, k), fill)
    return TopKTeacher(teacher.model, teacher.name, entry, vocab)

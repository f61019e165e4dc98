"""Teacher-output cache: a teacher's logits and embeddings, computed once, replayed by sample.

A sweep's cells share one frozen teacher, so its outputs on the training split
are a pure function of (teacher weights, data, view). They are stored once per
content key as fp16 memory-mapped arrays of shape (views, samples, dim) and
served by (batch.view, batch.index), so the training step skips the teacher's
forward pass. With random augmentation the cache holds a fixed number of
augmented views per sample (`data.aug_views`) that the loader replays, as in
Fast Knowledge Distillation (Shen & Xing, ECCV 2022).

`teacher.cache`: `auto` uses the cache where it is exact (every selected method
reads only the teacher's logits/embedding, and the train batches are either
unaugmented or replayed views); `on` insists (and says why when it cannot);
`off` always runs the teacher live.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kdrun.cache.entry import content_digest, make_once
from kdrun.cache.teachers import data_identity
from kdrun.config.errors import ConfigError
from kdrun.tracking.checkpoint import short_reason
from kdrun.models.frozen import FrozenTeacher
from kdrun.losses import loss_class
from kdrun.models.output import ModelOutput

log = logging.getLogger(__name__)

CACHEABLE_FIELDS = ("logits", "embedding")
CACHE_MODES = ("auto", "on", "off")


def why_not_cacheable(loss_cfg: Mapping[str, Any], data_cfg: Any, train_loader) -> str | None:
    """The reason the cache would not be exact here, or None when it is."""
    for name in loss_cfg:
        cls = loss_class(name)
        if not cls.needs_teacher:
            continue
        extra = [f for f in cls.requires if f not in CACHEABLE_FIELDS]
        if extra:
            return f"loss={name} reads the teacher's {', '.join(extra)} (only logits and embedding are cached)"
    if not hasattr(train_loader, "view_batches"):
        return f"data={data_cfg.name} streams from disk (the cache serves in-memory data sets)"
    if data_cfg.augment and not data_cfg.aug_views:
        return ("the train batches are freshly augmented every epoch; set data.aug_views=<V> to "
                "replay V fixed views per sample (Fast KD) or data.augment=false")
    return None


def use_output_cache(mode: str, loss_cfg, data_cfg, train_loader) -> bool:
    if mode not in CACHE_MODES:
        raise ConfigError(f"teacher.cache={mode}: use auto, on or off")
    if mode == "off":
        return False
    reason = why_not_cacheable(loss_cfg, data_cfg, train_loader)
    if reason and mode == "on":
        raise ConfigError(f"teacher.cache=on cannot be exact: {reason}; or use teacher.cache=auto")
    return reason is None



def output_key(teacher_key: str | None, teacher_path: Path, data_cfg: Any, seed: int,
               views: int) -> str:
    spec = {"teacher": teacher_key or content_digest(teacher_path), "data": data_identity(data_cfg),
            "seed": seed, "views": views, "fields": list(CACHEABLE_FIELDS), "format": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class CachedTeacher(FrozenTeacher):
    """Serves stored outputs for training batches; `.model` stays for evaluation."""

    cached = True

    def __init__(self, model: torch.nn.Module, name: str, entry: Path):
        super().__init__(model, name)
        self.entry = entry
        self.arrays = {f: np.load(entry / f"{f}.npy", mmap_mode="r") for f in CACHEABLE_FIELDS}

    def __call__(self, batch) -> ModelOutput:
        index = batch.index.cpu().numpy()
        view = np.zeros_like(index) if batch.view is None else batch.view.cpu().numpy()
        device = batch.x.device
        rows = {f: torch.from_numpy(np.ascontiguousarray(a[view, index])).float().to(device)
                for f, a in self.arrays.items()}
        return ModelOutput(logits=rows["logits"], features=[], embedding=rows["embedding"])


@torch.no_grad()
def _fill(entry: Path, teacher: FrozenTeacher, train_loader, views: int, device) -> None:
    arrays = None
    n = train_loader.num_samples
    for view in range(views):
        for batch in train_loader.view_batches(view, batch_size=256):
            out = teacher(batch.to(device))
            if arrays is None:
                arrays = {f: np.lib.format.open_memmap(
                    entry / f"{f}.npy", mode="w+", dtype=np.float16,
                    shape=(views, n, getattr(out, f).shape[1])) for f in CACHEABLE_FIELDS}
            for f, array in arrays.items():
                array[view, batch.index.numpy()] = getattr(out, f).float().cpu().numpy()
    for array in arrays.values():
        array.flush()


def _damage(entry: Path, key: str, views: int, samples: int) -> str | None:
    """Why a finished entry cannot be served (torn by a crash or a full disk), or None."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {f: np.load(entry / f"{f}.npy", mmap_mode="r") for f in CACHEABLE_FIELDS}
    except (OSError, ValueError, EOFError) as e:  # JSONDecodeError, a truncated .npy
        return short_reason(e)
    if meta != {"key": key, "views": views, "samples": samples}:
        return f"meta.json {meta} is not for this key, {views} view(s) x {samples} samples"
    for f, array in arrays.items():
        if array.dtype != np.float16 or array.ndim != 3 or array.shape[:2] != (views, samples):
            return f"{f}.npy is {array.dtype} {array.shape}, not float16 ({views}, {samples}, dim)"
    return None


def cached_teacher(teacher: FrozenTeacher, key: str, cache_dir: Path, train_loader, views: int,
                   device) -> CachedTeacher:
    """The CachedTeacher for `key`, computing the outputs first if no cell has yet (or the
    entry is damaged: then it is set aside as `<entry>.corrupt`)."""
    entry = Path(cache_dir) / "outputs" / key[:24]
    samples = train_loader.num_samples

    def fill(folder: Path) -> dict:
        log.info("caching teacher outputs (%d view(s) x %d samples) in %s", views, samples, entry)
        _fill(folder, teacher, train_loader, views, device)
        return {"key": key, "views": views, "samples": samples}

    make_once(entry, lambda e: _damage(e, key, views, samples), fill)
    return CachedTeacher(teacher.model, teacher.name, entry)

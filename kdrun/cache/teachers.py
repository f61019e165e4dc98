"""Teacher checkpoint cache: each teacher is trained at most once per content key.

The key hashes what determines the trained weights: the teacher model config,
the data that trains it, teacher.train and the seed. Cells that need the same
teacher share one entry; concurrent cells wait on a file lock instead of
training it twice. Training inside an entry is resumable like any cell.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from omegaconf import OmegaConf

from kdrun.engine.checkpoint import save_atomic
from kdrun.engine.distiller import Distiller
from kdrun.engine.loop import fit
from kdrun.models.build import build_model
from kdrun.models.weights import read_state_dict
from kdrun.tracking.result import write_json_atomic
from kdrun.tracking.tracker import Tracker

log = logging.getLogger(__name__)

# DataConfig fields that do not change what a teacher learns.
_DATA_FIELDS_IGNORED = {"eval_batch_size", "num_workers", "max_test", "download"}


@dataclass
class TeacherRecord:
    model: torch.nn.Module
    source: str             # "checkpoint" | "cache" | "trained"
    key: str | None         # content key (None for a user checkpoint)
    path: Path              # the weights file the teacher came from


def data_identity(data_cfg: Any) -> dict[str, Any]:
    data = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    if data.get("root"):
        data["root"] = str(Path(data["root"]).expanduser().resolve())
    return {k: v for k, v in sorted(data.items()) if k not in _DATA_FIELDS_IGNORED}


def teacher_key(teacher_cfg: Any, data_cfg: Any, seed: int) -> str:
    spec = {
        "model": {k: OmegaConf.to_container(teacher_cfg, resolve=True)[k]
                  for k in ("name", "pretrained", "num_classes", "kwargs")},
        "train": OmegaConf.to_container(teacher_cfg.train, resolve=True),
        "data": data_identity(data_cfg),
        "seed": seed,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def obtain_teacher(teacher_cfg: Any, data_cfg: Any, data, seed: int, cache_dir: Path,
                   device: torch.device, progress: bool = True) -> TeacherRecord:
    """The teacher from teacher.checkpoint, else from the cache, else trained now and cached."""
    if teacher_cfg.checkpoint:
        model = build_model(teacher_cfg, "teacher", data.num_classes, data.in_chans)
        return TeacherRecord(model, "checkpoint", None, Path(teacher_cfg.checkpoint))
    key = teacher_key(teacher_cfg, data_cfg, seed)
    entry = Path(cache_dir) / "teachers" / f"{teacher_cfg.name}-{key[:16]}"
    entry.mkdir(parents=True, exist_ok=True)
    weights = entry / "teacher.pt"
    # fork_rng: whether the teacher is trained here or read from the cache must not
    # change the global RNG that later initialises the student.
    with FileLock(str(entry) + ".lock"), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(teacher_cfg, "teacher", data.num_classes, data.in_chans,
                            load_checkpoint=False)
        if weights.is_file():
            model.load_state_dict(read_state_dict(weights))
            log.info("teacher %s from cache %s", teacher_cfg.name, entry)
            return TeacherRecord(model, "cache", key, weights)
        _train_teacher(model, teacher_cfg, data, seed, entry, device, progress)
        model.load_state_dict(read_state_dict(entry / "checkpoints" / "best.pt"))
        save_atomic({"model": model.state_dict()}, weights)
        write_json_atomic(entry / "teacher.json", {
            "key": key, "name": teacher_cfg.name, "seed": seed,
            "train": OmegaConf.to_container(teacher_cfg.train, resolve=True),
            "data": data_identity(data_cfg)})
        return TeacherRecord(model, "trained", key, weights)


def _train_teacher(model, teacher_cfg, data, seed, entry: Path, device, progress) -> None:
    log.info("training teacher %s (%d epochs) into %s", teacher_cfg.name,
             teacher_cfg.train.epochs, entry)
    ckpt_dir = entry / "checkpoints"
    if teacher_cfg.train.epochs == 0:  # use the model as built (e.g. pretrained weights)
        save_atomic({"model": model.state_dict()}, ckpt_dir / "best.pt")
        return
    fit(Distiller(model), data, epochs=teacher_cfg.train.epochs, optim=teacher_cfg.train.optim,
        sched=teacher_cfg.train.sched, ckpt_dir=ckpt_dir, tracker=Tracker(entry), device=device,
        progress=progress, desc="teacher", optim_key="teacher.train.optim",
        sched_key="teacher.train.sched")

"""Teacher checkpoint cache: each teacher is trained at most once per content key.

teacher.train.epochs=0 uses the model as built (published weights with pretrained=true,
else its seeded initialisation): nothing is trained, so nothing is stored.

The key hashes what determines the trained weights: the teacher model config,
the data that trains it (with teacher.partition: which part of the train split),
teacher.train and the seed. Cells that need the same
teacher share one entry; concurrent cells wait on a file lock instead of
training it twice. Training inside an entry is resumable like any cell; how a
teacher is trained is the engine's (it passes `train`), the cache only stores it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from omegaconf import OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.data.partition import FIELDS as PARTITION_FIELDS
from kdrun.data.partition import partition_identity
from kdrun.models.build import build_model
from kdrun.models.weights import read_state_dict
from kdrun.tracking.checkpoint import UnreadableFile, save_atomic, set_aside
from kdrun.tracking.result import write_json_atomic

log = logging.getLogger(__name__)

# DataConfig fields that do not change what a teacher learns.
_DATA_FIELDS_IGNORED = {"eval_batch_size", "num_workers", "max_test", "download", "cache_dir"}


# train(model, teacher_cfg, data, ckpt_dir): fit `model` resumably, best weights -> ckpt_dir/best.pt
TrainTeacher = Callable[[torch.nn.Module, Any, Any, Path], None]


@dataclass
class TeacherRecord:
    model: torch.nn.Module
    source: str             # "checkpoint" | "cache" | "trained" | "pretrained" | "as_built"
    key: str | None         # content key (None for a user checkpoint)
    path: Path              # the weights file (or model name / directory) it came from


def data_identity(data_cfg: Any) -> dict[str, Any]:
    data = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    if data.get("root"):
        data["root"] = str(Path(data["root"]).expanduser().resolve())
    # the train split does not depend on how it may be partitioned: teacher_key adds the part
    return {k: v for k, v in sorted(data.items())
            if k not in _DATA_FIELDS_IGNORED and k not in PARTITION_FIELDS}


def model_partition(model_cfg: Any) -> int | None:
    """`<role>.partition`: the part of the train split a model is trained on (None = all)."""
    return getattr(model_cfg, "partition", None)


def check_model_partition(model_cfg: Any, role: str, data_cfg: Any) -> None:
    """<role>.partition=i needs data.partition and 0 <= i < data.num_partitions."""
    index = model_partition(model_cfg)
    if index is None:
        return
    if data_cfg.partition == "none":
        raise ConfigError(f"{role}.partition={index} needs partitioned data: set "
                          "data.partition=iid|dirichlet|shards (and data.num_partitions)")
    if not 0 <= index < data_cfg.num_partitions:
        raise ConfigError(f"{role}.partition={index} does not exist: data.num_partitions="
                          f"{data_cfg.num_partitions} (use 0..{data_cfg.num_partitions - 1})")
    if model_cfg.checkpoint:
        raise ConfigError(f"{role}.partition={index} and {role}.checkpoint={model_cfg.checkpoint}: "
                          f"a checkpoint is not trained here; drop one of them")


def teacher_key(teacher_cfg: Any, data_cfg: Any, seed: int) -> str:
    spec = {
        "model": {k: OmegaConf.to_container(teacher_cfg, resolve=True)[k]
                  for k in ("name", "pretrained", "num_classes", "kwargs")},
        "train": OmegaConf.to_container(teacher_cfg.train, resolve=True),
        "data": data_identity(data_cfg),
        "seed": seed,
        "format": 1,
    }
    if model_partition(teacher_cfg) is not None:  # absent otherwise: keys stay as before
        spec["partition"] = spec_partition(teacher_cfg, data_cfg)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def as_built_key(teacher_cfg: Any, seed: int) -> str:
    """The key of an untrained teacher: its model spec, and the seed only when its weights are
    a seeded initialisation (published weights are the same for every seed and data set, so a
    sweep over seeds shares one teacher-output cache)."""
    spec = {"model": {k: OmegaConf.to_container(teacher_cfg, resolve=True).get(k)
                      for k in ("name", "pretrained", "num_classes", "kwargs", "path")},
            "seed": None if teacher_cfg.pretrained else seed, "format": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def obtain_teacher(teacher_cfg: Any, data_cfg: Any, data, seed: int, cache_dir: Path,
                   train: TrainTeacher, checkpoint_key: str = "teacher.checkpoint") -> TeacherRecord:
    """The teacher from teacher.checkpoint (named `checkpoint_key` in errors), else from the
    cache, else trained now and cached (on part teacher.partition of the train split when that
    is set). A corrupt cache entry is set aside and trained again."""
    check_model_partition(teacher_cfg, "teacher", data_cfg)
    if teacher_cfg.checkpoint:
        model = build_model(teacher_cfg, "teacher", data.num_classes, data.in_chans,
                            checkpoint_key=checkpoint_key)
        return TeacherRecord(model, "checkpoint", None, Path(teacher_cfg.checkpoint))
    if teacher_cfg.train.epochs == 0:  # the model as built (e.g. published weights): no copy
        key = as_built_key(teacher_cfg, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(teacher_cfg, "teacher", data.num_classes, data.in_chans,
                                load_checkpoint=False)
        source = getattr(teacher_cfg, "path", None) or teacher_cfg.name
        published = teacher_cfg.pretrained or getattr(model, "published", False)  # minilm's own
        return TeacherRecord(model, "pretrained" if published else "as_built", key, Path(source))
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
            try:
                model.load_state_dict(read_state_dict(weights))
                log.info("teacher %s from cache %s", teacher_cfg.name, entry)
                return TeacherRecord(model, "cache", key, weights)
            except UnreadableFile as e:
                set_aside(weights, e.reason)
        if model_partition(teacher_cfg) is not None:
            from kdrun.data.partition_view import partition_bundle

            data = partition_bundle(data, data_cfg, seed, model_partition(teacher_cfg))
        log.info("training teacher %s (%d epochs) into %s", teacher_cfg.name,
                 teacher_cfg.train.epochs, entry)
        train(model, teacher_cfg, data, entry / "checkpoints")
        model.load_state_dict(read_state_dict(entry / "checkpoints" / "best.pt"))
        save_atomic({"model": model.state_dict()}, weights)
        write_json_atomic(entry / "teacher.json", {
            "key": key, "name": teacher_cfg.name, "seed": seed,
            "train": OmegaConf.to_container(teacher_cfg.train, resolve=True),
            "data": data_identity(data_cfg), "partition": spec_partition(teacher_cfg, data_cfg)})
        return TeacherRecord(model, "trained", key, weights)


def start_from_partition(student_cfg: Any, teacher_cfg: Any, data_cfg: Any, data, seed: int,
                         cache_dir: Path, train: TrainTeacher) -> tuple[Any, TeacherRecord | None]:
    """student.partition=i: (a student config whose checkpoint is its architecture trained on
    part i with teacher.train, cached like a teacher; that record). Otherwise (student_cfg, None)."""
    index = model_partition(student_cfg)
    if index is None:
        return student_cfg, None
    check_model_partition(student_cfg, "student", data_cfg)
    from kdrun.engine.config import TeacherConfig

    pre = OmegaConf.structured(TeacherConfig(name=student_cfg.name))
    pre.pretrained, pre.num_classes = student_cfg.pretrained, student_cfg.num_classes
    pre.kwargs, pre.train, pre.partition = student_cfg.kwargs, teacher_cfg.train, index
    record = obtain_teacher(pre, data_cfg, data, seed, cache_dir, train)
    start = copy.deepcopy(student_cfg)
    start.checkpoint, start.partition = str(record.path), None
    return start, record


def spec_partition(teacher_cfg: Any, data_cfg: Any) -> dict[str, Any] | None:
    index = model_partition(teacher_cfg)
    return None if index is None else partition_identity(data_cfg, index)

"""Multi-teacher distillation: one student learns from K frozen teachers at once.

    kdrun algorithm=multi_teacher algorithm.teachers=[resnet56,wrn_40_2]
    kdrun algorithm=multi_teacher algorithm.teacher_per_partition=true data.partition=dirichlet

Each teacher is the `teacher` group's config with another name (same teacher.train),
obtained through the teacher cache (trained once per content key) or from its
algorithm.checkpoints entry. The losses see one teacher output (teacher_ensemble.py):
logits averaged (You et al., KDD 2017), weighted, or weighted per sample by teacher
confidence (CA-MKD, Zhang et al., ICASSP 2022); features from one teacher or averaged.
With teacher_per_partition, teacher i is trained on part i of data.partition: the
data-partitioning KD of Alballa & Canini (2024), where the student distils from
teachers that each saw one part of the data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, List, Optional

from kdrun.config.bounds import bounded
from kdrun.algorithms.teacher_ensemble import (ENSEMBLES, TeacherEnsemble, ensemble_top1,
                                               mean_output, mismatch)
from kdrun.cache.teachers import check_model_partition
from kdrun.engine.teachers import obtain_teacher
from kdrun.config.errors import ConfigError
from kdrun.data.partition import check_partition_config
from kdrun.engine.assemble import probe_architecture
from kdrun.engine.plugins import Plugin, Teaching, register_algorithm
from kdrun.models.frozen import FrozenTeacher
from kdrun.engine.evaluate import top1
from kdrun.losses import loss_class, needs_teacher
from kdrun.models.build import check_model_config


@dataclass
class MultiTeacherConfig:
    """You et al., "Learning from Multiple Teacher Networks" (KDD 2017); Zhang, Chen & Wang,
    "Confidence-Aware Multi-Teacher Knowledge Distillation" (ICASSP 2022); Alballa & Canini,
    "Practical Insights into Knowledge Distillation for Pre-Trained Models" (2024)."""

    name: str = "multi_teacher"
    teachers: List[str] = field(default_factory=list)  # model names (teacher.train for each);
    #   [] = teacher.name and a second zoo family (SECOND_TEACHER); with teacher_per_partition:
    #   [] = teacher.name on every part, else one name per part
    checkpoints: List[Optional[str]] = field(default_factory=list)  # [] or one per teacher
    #   (null entries: from the cache, trained once if missing)
    teacher_per_partition: bool = False  # teacher i trains on part i of data.partition
    ensemble: str = "mean"            # mean | weighted | adaptive (CA-MKD per-sample confidence)
    weights: List[float] = bounded(factory=list, ge=0)  # ensemble=weighted: one per teacher
    feature_teacher: str = "0"        # feature losses read teacher <index>, or "mean" of all


# algorithm.teachers=[] beside teacher.name: a wide ResNet, small enough to train in the
# default job's budget on every in-memory data set (a ResNet when teacher.name is that model)
SECOND_TEACHER = ("wrn_16_2", "resnet20")


def teacher_configs(cfg: Any, num_classes: int) -> list[Any]:
    """One TeacherConfig per teacher: the teacher group's, renamed (fails before training)."""
    algo, data_cfg = cfg.algorithm, cfg.data
    names = list(algo.teachers)
    if algo.teacher_per_partition:
        if data_cfg.partition == "none":
            raise ConfigError("algorithm.teacher_per_partition=true needs partitioned data: set "
                              "data.partition=iid|dirichlet|shards")
        names = names or [cfg.teacher.name] * data_cfg.num_partitions
        if len(names) != data_cfg.num_partitions:
            raise ConfigError(f"algorithm.teachers has {len(names)} names but data.num_partitions="
                              f"{data_cfg.num_partitions}: give one per part, or [] for teacher.name")
    elif not names:  # the default: the teacher group's model and one of another family
        names = [cfg.teacher.name, next(n for n in SECOND_TEACHER if n != cfg.teacher.name)]
    checkpoints = list(algo.checkpoints) or [None] * len(names)
    if len(checkpoints) != len(names):
        raise ConfigError(f"algorithm.checkpoints has {len(checkpoints)} entries for {len(names)} "
                          "teachers: give one per teacher (null = cache) or none")
    configs = []
    for i, (name, checkpoint) in enumerate(zip(names, checkpoints)):
        teacher = copy.deepcopy(cfg.teacher)
        if name != cfg.teacher.name:
            teacher.kwargs = {}  # teacher.kwargs belong to the teacher group's model
        teacher.name, teacher.checkpoint = name, checkpoint
        if algo.teacher_per_partition:
            teacher.partition = i
        check_model_config(teacher, f"algorithm.teachers[{i}]", num_classes)
        check_model_partition(teacher, "teacher", data_cfg)
        configs.append(teacher)
    return configs


def feature_source(algo: Any, count: int) -> int | str:
    """algorithm.feature_teacher as an index or "mean"."""
    value = str(algo.feature_teacher)
    if value == "mean":
        return value
    if not value.lstrip("-").isdigit() or not 0 <= int(value) < count:
        raise ConfigError(f"algorithm.feature_teacher={value}: use a teacher index 0..{count - 1} "
                          "or mean")
    return int(value)


def check_ensemble(algo: Any, count: int) -> None:
    if algo.ensemble not in ENSEMBLES:
        raise ConfigError(f"algorithm.ensemble={algo.ensemble}: use one of {', '.join(ENSEMBLES)}")
    if algo.ensemble != "weighted" and len(algo.weights):
        raise ConfigError("algorithm.weights is read only with algorithm.ensemble=weighted: set "
                          "that, or drop the weights")
    if algo.ensemble == "weighted":
        weights = list(algo.weights)
        if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"algorithm.weights={weights}: give {count} non-negative weights "
                              "with a positive sum, one per teacher")


def reads_features(loss_cfg: Any) -> bool:
    return any(f != "logits" for name in loss_cfg if loss_class(name).needs_teacher
               for f in loss_class(name).requires)


def frozen_teachers(cell, configs: list[Any], records: list[Any]) -> list[Any]:
    """Each teacher frozen, serving cached outputs where teacher.cache allows."""
    from kdrun.cache.outputs import cached_teacher, output_key, use_output_cache

    cfg, train_loader = cell.cfg, cell.data.train
    cache = use_output_cache(cfg.teacher.cache, cfg.loss, cfg.data, train_loader)
    views = getattr(train_loader, "aug_views", None) or 1
    teachers = []
    for tcfg, record in zip(configs, records):
        teacher = FrozenTeacher(record.model.to(cell.device), tcfg.name)
        if cache:
            key = output_key(record.key, record.path, cfg.data, cfg.seed, views)
            teacher = cached_teacher(teacher, key, cell.cache_dir, train_loader, views, cell.device)
        teachers.append(teacher)
    return teachers


@register_algorithm
class MultiTeacher(Plugin):
    """K frozen teachers as one (`teacher_probe`, `teacher`): their ensemble teaches."""

    name = "multi_teacher"
    config = MultiTeacherConfig
    distil_on_student_part = False  # a partition-started student distils on the whole split

    def check(self, cell) -> None:
        cfg, algo = cell.cfg, cell.cfg.algorithm
        if not needs_teacher(cfg.loss):
            raise ConfigError("algorithm=multi_teacher needs a loss that reads a teacher, "
                              "e.g. loss=kd")
        check_partition_config(cfg.data)
        self.configs = teacher_configs(cfg, cell.data.num_classes)
        check_ensemble(algo, len(self.configs))
        source = feature_source(algo, len(self.configs))
        # the losses read only logits: no features to pick or average
        self.source = source if reads_features(cfg.loss) else 0
        check_model_partition(cfg.student, "student", cfg.data)
        self.names = "+".join(t.name for t in self.configs)

    def teacher_probe(self, cell):
        probes = [probe_architecture(t, "teacher", cell.data) for t in self.configs]
        if self.source == "mean" and mismatch(probes):
            raise ConfigError(f"algorithm.feature_teacher=mean averages matched outputs, but "
                              f"{mismatch(probes)}: pick one, e.g. algorithm.feature_teacher=0")
        return (mean_output(probes) if self.source == "mean" else probes[self.source]), self.names

    def teacher(self, cell) -> Teaching:
        cfg, data, algo = cell.cfg, cell.data, cell.cfg.algorithm
        records = [obtain_teacher(t, cfg.data, data, cfg.seed, cell.cache_dir, cell.device,
                                  cfg.trainer.progress, f"algorithm.checkpoints[{i}]")
                   for i, t in enumerate(self.configs)]
        models = [r.model.to(cell.device) for r in records]
        teacher = TeacherEnsemble(frozen_teachers(cell, self.configs, records), algo.ensemble,
                                  list(algo.weights), self.source)
        teachers = [{"name": t.name, "partition": t.partition, "checkpoint": t.checkpoint,
                     "teacher_source": r.source, "teacher_key": r.key,
                     "teacher_top1": top1(r.model, data.test, cell.device)}
                    for t, r in zip(self.configs, records)]
        sources = {r.source for r in records}
        return Teaching(teacher, models[0 if self.source == "mean" else self.source], {
            "teacher": self.names, "teachers": teachers,
            "teacher_source": sources.pop() if len(sources) == 1 else "mixed",
            "teacher_top1": ensemble_top1(models, data.test, cell.device, algo.ensemble,
                                          list(algo.weights))})

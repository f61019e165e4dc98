"""Self-supervised (label-free) distillation: images in, embeddings out, scored by how well
the frozen embeddings classify with the labels they never trained on.

`task=ssl` trains on multi-crop views of the images (kdrun/data/ssl_data.py) with label-free
losses: dino (the student against its own moving average) and seed (the student against a
frozen self-supervised teacher's similarity distribution). Each epoch scores val and test by
k-NN top-1 (k = 20, cosine, weighted votes) and linear-probe top-1 on embeddings of the
un-augmented images, both fitted on the training split's embeddings and labels
(kdrun/tasks/ssl_probes.py); the best epoch is the one with the highest val k-NN. result.json:
student_knn, best_student_knn, val_knn, teacher_knn, the same for linear, and embedding_dim.
metrics.jsonl's train_agree: how often the student's top prototype (dino) or nearest queue
entry (seed) is the teacher's, in percent.

A teacher trained here (loss=seed) is trained by DINO with its default settings
(Task.supervised), once per teacher key like every teacher. Offline only
(scheme=offline, algorithm=vanilla), on one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task


@dataclass
class SSLConfig(TaskConfig):
    name: str = "ssl"


class SelfSupervised(Task):
    name = "ssl"
    config = SSLConfig
    output_type = ModelOutput
    metrics = ("knn", "linear")
    selection = Selection("knn", "max")
    train_metric = "agree"
    offline_only = True

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data.ssl_data import build_ssl_data

        if not hasattr(data_cfg, "views"):
            raise ConfigError(f"task=ssl needs image data with multi-crop views, not data="
                              f"{data_cfg.name}: use data=ssl_digits (or a data option extending "
                              "/schema/data/ssl_image)")
        return build_ssl_data(data_cfg, seed)

    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        from kdrun.tasks.ssl_probes import probe_scores

        if across_ranks:
            raise ConfigError("task=ssl scores on one process: run it without torchrun")
        return probe_scores(predictor, loader, device)

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        """`logits` is the objective's per-sample agreement (0..1), not class scores."""
        return logits.sum()

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        return 100.0 * sums[0] / max(seen, 1)

    def format(self, metric: str, value: float) -> str:
        return f"{value:.2f}%"

    def check(self, cfg: Any, data: Any, with_teacher: bool) -> None:
        super().check(cfg, data, with_teacher)
        views = cfg.data.views
        if "dino" in cfg.loss and views.global_crops + views.local_crops < 2:
            raise ConfigError("loss=dino compares two views of an image: set "
                              "data.views.global_crops=2 or data.views.local_crops>=1")
        for name in cfg.loss:
            if "queue_size" in cfg.loss[name] and cfg.loss[name].queue_size > data.train.num_samples:
                raise ConfigError(f"loss.{name}.queue_size={cfg.loss[name].queue_size} is larger "
                                  f"than the {data.train.num_samples} training images: the queue "
                                  f"would hold each image more than once; use at most "
                                  f"{data.train.num_samples}")

    def supervised(self, model: torch.nn.Module) -> torch.nn.Module:
        """DINO with its default settings: how a teacher is trained without labels."""
        from kdrun.losses.response.dino import DINO, DINOConfig
        from kdrun.tasks.ssl_objective import SSLObjective

        probe = ModelOutput(torch.zeros(1, 1), [], torch.zeros(1, embedding_width(model)))
        return SSLObjective(model, torch.nn.ModuleDict({"dino": DINO(DINOConfig(), probe)}))

    def objective(self, cell, student, losses, teaching, ce_weight: float):
        from kdrun.tasks.ssl_objective import SSLObjective

        teacher = teaching.teacher if teaching is not None else None
        return SSLObjective(student, losses, teacher,
                            total_steps=cell.cfg.trainer.epochs * len(cell.data.train))

    def result_extras(self, data, result: dict[str, Any]) -> dict[str, Any]:
        return {"train_images": data.train.num_samples}


def embedding_width(model: torch.nn.Module) -> int:
    """The width of the pre-logit vector: what the classifier reads."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(classifier, torch.nn.Linear):
        raise ConfigError(f"task=ssl trains a teacher through its classifier's input width; "
                          f"{type(model).__name__} has no linear get_classifier(): pick a zoo or "
                          "timm model")
    return classifier.in_features


SSL = register_task(SelfSupervised())

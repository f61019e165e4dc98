"""Semantic segmentation: an image in, a class per pixel out, scored by mIoU and pixel accuracy.

`task=segmentation` trains segmentation models (kdrun/models/zoo/unet_seg.py, registered
with kind "segmentation") on segmentation data (kdrun/data/seg_digits.py: batch.y is a
(B, H, W) mask; IGNORE_INDEX pixels are not scored). The metrics, in percent like top-1:

- miou: the mean over classes of IoU = TP / (TP + FP + FN), summed over every pixel of the
  split (one confusion matrix per split, the usual definition on Cityscapes / VOC); a class
  absent from both labels and predictions of the split is left out of the mean
- pixel_acc: correctly labelled pixels / scored pixels

The best epoch is the one with the highest val_miou. result.json gains student_miou,
best_student_miou, val_miou, teacher_miou and the same for pixel_acc. The label loss is the
per-pixel cross-entropy averaged over scored pixels. Offline distillation only
(scheme=offline, algorithm=vanilla); the teacher runs live (its features feed IFVD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from omegaconf import OmegaConf
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX
from kdrun.engine import distributed
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task


@dataclass
class SegmentationConfig(TaskConfig):
    name: str = "segmentation"


def confusion(logits: Tensor, target: Tensor) -> Tensor:
    """(K*K,) counts of (label, predicted) pairs over the scored pixels of (B, K, H, W) logits
    and (B, H, W) labels; row = label, column = prediction."""
    k = logits.shape[1]
    scored = target != IGNORE_INDEX
    pairs = target[scored] * k + logits.argmax(1)[scored]
    return torch.bincount(pairs, minlength=k * k).to(torch.float64)


def scores(matrix: Tensor) -> dict[str, float]:
    """miou and pixel_acc (percent) of a (K, K) confusion matrix."""
    matrix = matrix.to(torch.float64)
    tp = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    miou = (tp[present] / union[present]).mean().item() if present.any() else 0.0
    total = matrix.sum().item()
    return {"miou": 100.0 * miou, "pixel_acc": 100.0 * tp.sum().item() / max(total, 1.0)}


class Segmentation(Task):
    name = "segmentation"
    config = SegmentationConfig
    output_type = ModelOutput
    metrics = ("miou", "pixel_acc")
    selection = Selection("miou", "max")
    train_metric = "miou"
    model_kind = "segmentation"
    offline_only = True

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data.seg_cityscapes import build_cityscapes
        from kdrun.data.seg_config import SegDataConfig
        from kdrun.data.seg_digits import build_seg_digits

        kind = OmegaConf.get_type(data_cfg) if OmegaConf.is_config(data_cfg) else type(data_cfg)
        builders = {"seg_digits": build_seg_digits, "cityscapes": build_cityscapes}
        if kind is not SegDataConfig:
            raise ConfigError(f"task=segmentation needs segmentation data, not data={data_cfg.name}: "
                              "use data=seg_digits (or data=cityscapes data.root=<folder>)")
        if data_cfg.name not in builders:
            raise ConfigError(f"data.name={data_cfg.name}: unknown segmentation data; use one of "
                              f"{', '.join(builders)}")
        return builders[data_cfg.name](data_cfg, seed)

    @torch.no_grad()
    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        was_training = getattr(predictor, "training", False)
        if isinstance(predictor, torch.nn.Module):
            predictor.eval()
        total = None
        for batch in loader:
            batch = batch.to(device)
            counts = confusion(predictor(batch.x).logits, batch.y)
            total = counts if total is None else total + counts
        if isinstance(predictor, torch.nn.Module):
            predictor.train(was_training)
        if total is None:
            return {"miou": 0.0, "pixel_acc": 0.0}
        if across_ranks:
            total = distributed.sum_across_ranks(total.to(device)).cpu()
        k = math.isqrt(total.numel())
        return scores(total.view(k, k))

    def count(self, batch: Any) -> int:
        return int((batch.y != IGNORE_INDEX).sum())

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        """The batch's confusion matrix, flattened: the epoch's train_miou is over all its pixels."""
        return confusion(logits, batch.y).float()

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        k = math.isqrt(len(sums))
        return scores(torch.tensor(sums, dtype=torch.float64).view(k, k))["miou"]

    def format(self, metric: str, value: float) -> str:
        return f"{value:.2f}%"

    def objective(self, cell, student, losses, teaching, ce_weight: float):
        """The label loss plus the terms; a loss that follows the training's length (AICSD's
        adaptive weighting) is told the epochs first."""
        for loss in losses.values():
            if hasattr(loss, "set_schedule"):
                loss.set_schedule(cell.cfg.trainer.epochs)
        return super().objective(cell, student, losses, teaching, ce_weight)

    def result_extras(self, data: Any, result: dict[str, Any]) -> dict[str, Any]:
        return {"num_classes": data.num_classes, "test_canvases": data.test.num_samples}


SEGMENTATION = register_task(Segmentation())

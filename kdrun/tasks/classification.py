"""Classification: an image in, class logits out, scored by top-1 accuracy in percent.

kdrun's first task and the default. It writes result.json's student_top1,
best_student_top1, val_top1 and teacher_top1 and metrics.jsonl's train_top1,
val_top1 and test_top1; the best epoch is the one with the highest val_top1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import Tensor

from kdrun.engine.evaluate import top1
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task


@dataclass
class ClassificationConfig(TaskConfig):
    name: str = "classification"


class Classification(Task):
    name = "classification"
    config = ClassificationConfig
    output_type = ModelOutput
    metrics = ("top1",)
    selection = Selection("top1", "max")
    train_metric = "top1"

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data import build_data

        return build_data(data_cfg, seed)

    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        return {"top1": top1(predictor, loader, device, across_ranks=across_ranks)}

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        return (logits.argmax(1) == batch.y).sum()

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        return 100.0 * sums[0] / seen

    def format(self, metric: str, value: float) -> str:
        return f"{value:.2f}%"

    def serve_teacher(self, teacher, record, cell, live: bool):
        """Stored logits/embeddings where teacher.cache allows (kdrun/cache/outputs.py), unless
        `live`: a plug-in whose terms read the teacher's features runs it live."""
        from kdrun.cache.outputs import cached_teacher, output_key, use_output_cache

        cfg = cell.cfg
        data = cell.data.train
        if live or not use_output_cache(cfg.teacher.cache, cfg.loss, cfg.data, data):
            return teacher
        views = getattr(data, "aug_views", None) or 1
        key = output_key(record.key, record.path, cfg.data, cfg.seed, views)
        return cached_teacher(teacher, key, cell.cache_dir, data, views, cell.device)


CLASSIFICATION = register_task(Classification())

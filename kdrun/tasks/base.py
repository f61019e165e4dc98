"""The Task contract and its registry: what a cell learns to predict and how it is scored.

A task names everything the engine must not hard-code about the problem:

- `build_data(data_cfg, seed)`: its data module (train / val / test loaders)
- `output_type`: what its models return (ModelOutput for classification)
- `metrics` and `evaluate(predictor, loader, device, across_ranks)`: one split's scores,
  logged each epoch as `val_<metric>` and `test_<metric>`
- `selection`: the metric, read on val, that chooses the best epoch, and its direction
- `train_metric`, `train_sums`, `train_value`: the training batches' score, from the
  logits the objective returns (metrics.jsonl's `train_<metric>`)
- `label_loss(logits, batch)` and `count(batch)`: the supervised term and how many
  targets a batch scores (samples for classification, tokens for language modelling)
- `model_kind`: which models it trains ("image", "lm", or a kind its own zoo models are
  registered with); `check(cfg, data)` refuses others, and with `offline_only` any scheme or
  algorithm but offline/vanilla
- `supervised(model)`: the objective that trains a model alone (a teacher trained once)
- `learn(cell)`: the whole learning when it is not one fit (None: the builder's path)
- `serve_teacher(...)`: how a frozen teacher's outputs reach the training step (live or
  from the task's teacher-output cache)
- `epoch_extras` / `result_extras`: what else an epoch logs (an LM's generated sample)
  and what else result.json holds (tokens/s)
- the result.json keys it writes, per metric m: `student_<m>` (test, last epoch),
  `best_student_<m>` (test at the best-validation epoch), `val_<m>` (val at that
  epoch) and `teacher_<m>` (the teacher on test)

A perplexity task would be metrics=("ppl",), selection=Selection("ppl", "min") and write
student_ppl, best_student_ppl, val_ppl, teacher_ppl, without a change to the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch
from omegaconf import MISSING
from torch import Tensor

from kdrun.config.errors import ConfigError

DEFAULT_TASK = "classification"
_KIND_TEXT = {"image": "an image", "lm": "a language"}  # other kinds read "a <kind>"
_TASKS: dict[str, "Task"] = {}


@dataclass
class TaskConfig:
    """The `task` group's schema; a task with settings extends it (conf/task/<name>.yaml)."""

    name: str = MISSING


@dataclass(frozen=True)
class Selection:
    """The validation metric that picks the best epoch; on ties the earlier epoch stays."""

    metric: str
    mode: str  # "max": higher is better (top1, mIoU) | "min": lower is better (ppl)

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"Selection({self.metric!r}, {self.mode!r}): mode is max or min")

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best


class Task(ABC):
    """One kind of problem; subclasses set the class attributes and the four methods."""

    name: ClassVar[str]
    config: ClassVar[type] = TaskConfig
    output_type: ClassVar[type]
    metrics: ClassVar[tuple[str, ...]]   # what evaluate() returns, in record order
    selection: ClassVar[Selection]       # selection.metric is one of `metrics`
    train_metric: ClassVar[str]          # metrics.jsonl's train_<train_metric>
    model_kind: ClassVar[str] = "image"  # kdrun.models.registry.model_kind of its models
    # True: only scheme=offline algorithm=vanilla (the others are written for image classifiers)
    offline_only: ClassVar[bool] = False

    @abstractmethod
    def build_data(self, data_cfg: Any, seed: int) -> Any:
        """The cell's data bundle (train, train_plain, val, test loaders and facts)."""

    @abstractmethod
    def evaluate(self, predictor: Callable[[Tensor], Any], loader: Iterable, device: torch.device,
                 across_ranks: bool = False) -> dict[str, float]:
        """{metric: value} of `predictor` on `loader` (eval mode, no grad). across_ranks:
        each rank scored its shard under DDP; combine them."""

    @abstractmethod
    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        """Per-batch sums (a scalar or a vector) behind the train metric; the loop adds
        them over the epoch and across ranks."""

    @abstractmethod
    def train_value(self, sums: Sequence[float], seen: float) -> float:
        """The train metric from the epoch's summed `train_sums` and the samples seen."""

    def format(self, metric: str, value: float) -> str:
        """How the loop's log line shows a value."""
        return f"{value:.4g}"

    def label_loss(self, logits: Tensor, batch: Any) -> Tensor:
        """The supervised term the engine adds (weighted by the losses' ce_scale)."""
        return torch.nn.functional.cross_entropy(logits, batch.y)

    def count(self, batch: Any) -> int:
        """How many targets `batch` scores: the weight of its terms in the epoch's means."""
        return int(batch.y.numel())

    def check(self, cfg: Any, data: Any, with_teacher: bool) -> None:
        """Refuse, with one line naming the key, losses and models this task cannot train."""
        from kdrun.losses import loss_class
        from kdrun.models.registry import model_kind

        for loss in cfg.loss:
            if self.name not in loss_class(loss).tasks:
                raise ConfigError(f"loss={loss} is written for task={'|'.join(loss_class(loss).tasks)}, "
                                  f"not task={self.name}: pick another loss or task")
        roles = ("student", "teacher") if with_teacher else ("student",)
        for role in roles:
            name = getattr(cfg, role).name
            kind = model_kind(name)
            if kind != self.model_kind:
                raise ConfigError(f"{role}={name} is {kind_text(kind)} model but task={self.name} "
                                  f"trains {kind_text(self.model_kind)} models: {kind_hint(kind, self)}")
        if self.offline_only and (cfg.scheme.name, cfg.algorithm.name) != ("offline", "vanilla"):
            raise ConfigError(f"task={self.name} runs scheme=offline algorithm=vanilla (got scheme="
                              f"{cfg.scheme.name} algorithm={cfg.algorithm.name}): the other "
                              "schemes and algorithms are written for image classifiers")

    def supervised(self, model: torch.nn.Module) -> torch.nn.Module:
        """The objective that trains `model` alone, without a teacher (a teacher trained once
        into the cache, a partition start): the label loss by default."""
        from kdrun.engine.distiller import Distiller

        return Distiller(model, label_loss=self.label_loss)

    def learn(self, cell: Any) -> dict[str, Any] | None:
        """The whole learning of a cell when it is not one fit of `objective` (rounds of
        progressive distillation, say): its result.json keys, or None for the builder's
        usual path. Asked after the scheme's and algorithm's own `learn`."""
        return None

    def objective(self, cell: Any, student: torch.nn.Module, losses: torch.nn.ModuleDict,
                  teaching: Any, ce_weight: float) -> torch.nn.Module:
        """The training objective of an offline cell: label loss plus the loss terms."""
        from kdrun.engine.distiller import Distiller

        return Distiller(student, losses, teaching.teacher if teaching else None, ce_weight,
                         label_loss=self.label_loss)

    def serve_teacher(self, teacher: Any, record: Any, cell: Any, live: bool) -> Any:
        """What the training step calls for the teacher's outputs: `teacher` itself (live), or
        a cache serving its stored outputs (the task's own teacher-output cache)."""
        return teacher

    def epoch_extras(self, predictor: Any, data: Any, device: torch.device,
                     epoch: int) -> dict[str, Any]:
        """Non-metric values an epoch logs next to its metrics (none by default)."""
        return {}

    def result_extras(self, data: Any, result: dict[str, Any]) -> dict[str, Any]:
        """More result.json keys once training is done (none by default)."""
        return {}

    # result.json keys, per metric
    def last_key(self, metric: str) -> str:
        return f"student_{metric}"

    def best_key(self, metric: str) -> str:
        return f"best_student_{metric}"

    def val_key(self, metric: str) -> str:
        return f"val_{metric}"

    def teacher_key(self, metric: str) -> str:
        return f"teacher_{metric}"

    @property
    def result_keys(self) -> tuple[str, ...]:
        """Every result.json key this task writes (student, best, val per metric; teacher)."""
        keys = [k for m in self.metrics for k in (self.last_key(m), self.best_key(m), self.val_key(m))]
        return (*keys, *(self.teacher_key(m) for m in self.metrics))

    def empty_result(self) -> dict[str, None]:
        """The result keys before anything is scored (a running or failed cell)."""
        return dict.fromkeys(self.result_keys)

    def score_teacher(self, model: Callable[[Tensor], Any], loader: Iterable, device: torch.device,
                      across_ranks: bool = False) -> dict[str, float]:
        """{teacher_<metric>: value} of a teacher on `loader` (the test split)."""
        scores = self.evaluate(model, loader, device, across_ranks)
        return {self.teacher_key(m): scores[m] for m in self.metrics}

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def kind_text(kind: str) -> str:
    return _KIND_TEXT.get(kind, f"a {kind}")


def kind_hint(kind: str, task: Task) -> str:
    """What to pick instead: the tasks that train `kind`, or models of the task's kind."""
    from kdrun.models.registry import models_of_kind

    tasks = [n for n, t in _TASKS.items() if t.model_kind == kind]
    models = models_of_kind(task.model_kind)
    shown = ", ".join(models[:5]) + (", any timm model" if task.model_kind == "image" else "")
    use = f"use task={'|'.join(tasks)}, or " if tasks else "use "
    return f"{use}{kind_text(task.model_kind)} model ({shown})"


def register_task(task: Task) -> Task:
    """Add `task` under its name (one instance per task: tasks hold no state)."""
    if task.selection.metric not in task.metrics:
        raise ValueError(f"task {task.name}: selection metric {task.selection.metric!r} is not "
                         f"one of its metrics {task.metrics}")
    _TASKS[task.name] = task
    return task


def list_tasks() -> list[str]:
    import kdrun.tasks  # noqa: F401  (imports every task module)

    return sorted(_TASKS)


def task_configs() -> dict[str, type]:
    """name -> config dataclass, for the ConfigStore (`schema/task/<name>`)."""
    import kdrun.tasks  # noqa: F401

    return {name: task.config for name, task in _TASKS.items()}


def task_for(spec: Any = None) -> Task:
    """The task of `spec`: a name, the `task` config node (its .name), or None for a config
    composed before the task group existed (classification)."""
    import kdrun.tasks  # noqa: F401

    name = DEFAULT_TASK if spec is None else spec if isinstance(spec, str) else spec.name
    if name not in _TASKS:
        raise ConfigError(f"task={name}: unknown task; use one of {', '.join(sorted(_TASKS))}")
    return _TASKS[name]

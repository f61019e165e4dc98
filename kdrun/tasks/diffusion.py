"""Diffusion: progressive distillation of a denoiser that kdrun trains (Salimans & Ho, ICLR 2022).

`task=diffusion` learns to generate the images of an image data set (digits at 16 px by
default; labels unused) with a v-predicting U-Net (kdrun/models/zoo/denoiser.py) under the
cosine schedule, sampled with DDIM. A cell runs, resumably:

1. the FD scorer: a small classifier trained once per data config (diffusion_scoring.py);
2. the teacher: the denoiser trained once by the denoising objective (`loss=denoise`'s
   MSE on v) into the teacher cache, its best epoch chosen by val FD at task.teacher_steps;
3. task.rounds rounds, each a resumable fit of trainer.epochs in rounds/round<k>/ that
   halves the steps: with `loss=progressive` the student, a copy of the previous round's
   model, learns to match two DDIM steps of that model with one (Algorithm 2); with
   `loss=denoise` the same model keeps training without a teacher (the baseline: equal
   training, sampled with the same reduced steps). A round passes on its best-val epoch.

Scored by FD (lower is better) of task.fd_samples samples against the val or test images;
result.json: student_fd / best_student_fd / val_fd (the last round), teacher_fd (the teacher
at task.teacher_steps), steps, sample_s (seconds to draw task.fd_samples samples), rounds (per
round: steps, FDs, sample_s and undistilled_fd, the teacher sampled with the same steps),
fd_scorer. Each round writes samples_round<k>.png (samples_teacher.png for the teacher),
logged to W&B; metrics.jsonl has one line per round, metrics.round<k>.jsonl one per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task

OBJECTIVES = ("progressive", "denoise")


@dataclass
class DiffusionConfig(TaskConfig):
    name: str = "diffusion"
    teacher_steps: int = bounded(8, ge=2, why="the teacher's DDIM steps; each round halves them")
    rounds: int = bounded(2, ge=1, why="rounds of halving the sampling steps")
    fd_samples: int = bounded(128, ge=16, why="images generated per FD; keep it above the "
                              "scorer's feature width (64 for resnet8)")
    grid_samples: int = bounded(64, ge=1, why="images in each samples_*.png")
    scorer: str = "resnet8"           # the classifier whose embedding FD compares
    scorer_epochs: int = bounded(10, ge=1, why="epochs of the FD scorer (trained once, cached)")
    # FD every this many epochs (and always at the last): sampling a many-step teacher each
    # epoch can cost more than its training; the epochs in between log fd = inf
    eval_every: int = bounded(1, ge=1, why="epochs between FD evaluations")


class DiffusionTask(Task):
    name = "diffusion"
    config = DiffusionConfig
    output_type = ModelOutput
    metrics = ("fd",)
    selection = Selection("fd", "min")
    train_metric = "mse"
    model_kind = "denoiser"
    offline_only = True

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data import build_data

        if hasattr(data_cfg, "tokenizer"):
            raise ConfigError(f"task=diffusion generates images, not data={data_cfg.name}: use "
                              "data=digits or data=fashion_mnist")
        if data_cfg.normalize:
            raise ConfigError("data.normalize=true: task=diffusion models pixels in [-1, 1]; "
                              "use data.normalize=false")
        return build_data(data_cfg, seed)

    @torch.no_grad()
    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        """FD of the predictor's (a Sampler's) images from the split's fixed noise."""
        if not hasattr(loader, "fd") or not hasattr(predictor, "generate"):
            raise TypeError("task=diffusion scores a Sampler on a ReferenceSplit "
                            "(kdrun/tasks/diffusion_scoring.py): run it through DiffusionTask.learn")
        if predictor.skip:
            return {"fd": math.inf}
        return {"fd": loader.fd(predictor.generate(loader.noise(), device))}

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        """`logits` are the objective's per-sample x-space errors (see DiffusionObjective)."""
        return logits.sum()

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        return sums[0] / max(seen, 1)

    def count(self, batch: Any) -> int:
        return int(batch.x.shape[0])

    def format(self, metric: str, value: float) -> str:
        return f"{value:.2f}" if metric == "fd" else f"{value:.4f}"

    def check(self, cfg: Any, data: Any, with_teacher: bool) -> None:
        super().check(cfg, data, True)  # the teacher is every cell's starting point
        names = list(cfg.loss)
        if len(names) != 1 or names[0] not in OBJECTIVES:
            raise ConfigError(f"loss={','.join(names)}: task=diffusion trains with one of "
                              f"loss=progressive (distil) or loss=denoise (no teacher)")
        if cfg.student.name != cfg.teacher.name or _shapes(cfg.student) != _shapes(cfg.teacher):
            raise ConfigError(f"student={cfg.student.name} differs from teacher={cfg.teacher.name}: "
                              "progressive distillation starts the student as a copy of the "
                              f"teacher; use student={cfg.teacher.name} (student.kwargs may change "
                              "dropout, not the architecture)")
        task = cfg.task
        if task.teacher_steps % 2 ** task.rounds:
            raise ConfigError(f"task.rounds={task.rounds} halves task.teacher_steps="
                              f"{task.teacher_steps} to a fraction of a step: use task.teacher_steps="
                              f"{2 ** task.rounds * max(1, task.teacher_steps // 2 ** task.rounds)}"
                              " or fewer rounds")
        if cfg.teacher.partition is not None or cfg.student.partition is not None:
            raise ConfigError("teacher.partition / student.partition: task=diffusion trains on "
                              "the whole train split; drop them")
        from kdrun.models.registry import model_kind

        try:
            scorer_kind = model_kind(task.scorer)
        except ValueError as e:
            raise ConfigError(f"task.scorer={task.scorer}: {e}") from None
        if scorer_kind != "image":
            raise ConfigError(f"task.scorer={task.scorer} is not an image classifier: use "
                              "task.scorer=resnet8 (or another zoo or timm classifier)")

    def supervised(self, model: nn.Module) -> nn.Module:
        """The teacher's objective: the MSE on v at t ~ U(0, 1)."""
        from kdrun.losses.response.denoise import Denoise, DenoiseConfig

        return DiffusionObjective(model, Denoise(DenoiseConfig(), None, None))

    def learn(self, cell: Any) -> dict[str, Any]:
        from kdrun.tasks.diffusion_rounds import run_rounds

        return run_rounds(cell)


def _shapes(model_cfg: Any) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a model config, built on the meta device (no memory, RNG untouched)."""
    from kdrun.models.registry import create_model

    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        model = create_model(model_cfg.name, num_classes=2, **dict(model_cfg.kwargs))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


class DiffusionObjective(nn.Module):
    """One step of a diffusion fit: noise a batch, run the loss; `steps` is what the fit's
    evaluation samples with, every `eval_every` epochs of `epochs` (and at the last).

    With no teacher (loss=denoise) t ~ U(0, 1) and the loss is the MSE on v. With a teacher
    (loss=progressive) t = i / steps, i ~ U{1..steps}, as in Algorithm 2, and the teacher's two
    DDIM steps give the target. Returns (terms, per-sample x-space error against the
    target): the error stands where a classifier's logits would, for the train metric.
    """

    def __init__(self, student: nn.Module, loss: nn.Module, teacher: nn.Module | None = None,
                 steps: int = 8, epochs: int = 1, eval_every: int = 1):
        super().__init__()
        self.student, self.loss, self.steps = student, loss, steps
        self.epochs, self.eval_every, self.epoch = epochs, eval_every, 0
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # frozen, not saved, not trained

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def predictor(self) -> nn.Module:
        from kdrun.tasks.diffusion_scoring import Sampler

        done = self.epoch + 1
        skip = done % self.eval_every != 0 and done < self.epochs
        return Sampler(self.student, self.steps, skip=skip)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        from kdrun.losses.response.progressive import distilled_target, per_sample_mse, x_prediction
        from kdrun.models.zoo.denoiser import NoisyBatch, ddim_step

        x = batch.x * 2 - 1
        n = x.shape[0]
        if self.teacher is None:
            t = torch.rand(n, device=x.device)
        else:
            t = torch.randint(1, self.steps + 1, (n,), device=x.device).float() / self.steps
        noisy = NoisyBatch.of(x, torch.randn_like(x), t)
        out = self.student(noisy.z, t)
        if self.teacher is None:
            terms, target = self.loss(out, None, noisy), x
        else:
            with torch.no_grad():
                half, full = t - 0.5 / self.steps, t - 1.0 / self.steps
                z_half = ddim_step(self.teacher.predict_x(noisy.z, t), noisy.z, t, half)
                z_full = ddim_step(self.teacher.predict_x(z_half, half), z_half, half, full)
                target = distilled_target(noisy.z, z_full, t, full)
            terms = self.loss(out, ModelOutput(target, [], target.flatten(1)), noisy)
        return terms, per_sample_mse(x_prediction(out.logits.detach(), noisy), target)


DIFFUSION = register_task(DiffusionTask())

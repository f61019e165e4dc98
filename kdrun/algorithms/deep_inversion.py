"""DeepInversion: synthesise a training set from the statistics stored in the teacher's
BatchNorm layers (Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via
DeepInversion", CVPR 2020).

Starting from noise, a batch of images x is optimised (Adam) so that the teacher
classifies them as balanced target labels while the batch's per-channel mean and
variance at every BatchNorm input match the running statistics stored there:

    CE(T(x'), y) + bn * sum_l (||mu_l(x') - mu_l^BN||_2 + ||var_l(x') - var_l^BN||_2)
                 + tv * TV_2(x') + l2 * ||x'||_2,      x' = x randomly jittered (rolled)

Adaptive DeepInversion's competition term is left out (the paper's CIFAR-10 run
sets it to 0). The pool is built batch by batch; each finished batch is saved under
the cell's checkpoints, and every random draw comes from a generator seeded by
(seed, batch), so a killed run redoes at most one batch and ends with the same pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.data.seeds import torch_generator
from kdrun.tracking.checkpoint import load_checkpoint, save_atomic

log = logging.getLogger(__name__)


class BatchNormStatistics:
    """Forward hooks on every BatchNorm2d: the distance of the batch's input statistics to
    the layer's running ones (the paper's feature-distribution regulariser)."""

    def __init__(self, model: nn.Module):
        self.distances: list[Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, nn.BatchNorm2d)]
        if not self.handles:
            raise ValueError("DeepInversion needs a teacher with BatchNorm2d layers")

    def _hook(self, module: nn.BatchNorm2d, inputs, output) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False)
        self.distances.append(torch.norm(module.running_mean - mean, 2)
                              + torch.norm(module.running_var - var, 2))

    def take(self) -> Tensor:
        total, self.distances = sum(self.distances), []
        return total

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def total_variation(x: Tensor) -> Tensor:
    """The reference code's TV: L2 norms of horizontal, vertical and both diagonal differences."""
    return (torch.norm(x[:, :, :, :-1] - x[:, :, :, 1:]) + torch.norm(x[:, :, :-1, :] - x[:, :, 1:, :])
            + torch.norm(x[:, :, 1:, :-1] - x[:, :, :-1, 1:])
            + torch.norm(x[:, :, :-1, :-1] - x[:, :, 1:, 1:]))


def invert_batch(teacher: nn.Module, targets: Tensor, shape: tuple[int, ...], cfg: Any,
                 generator: torch.Generator, device: torch.device) -> Tensor:
    """One batch of images for `targets`, optimised for cfg.inversion_iters steps."""
    x = torch.randn((len(targets), *shape), generator=generator).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=cfg.inversion_lr)
    targets = targets.to(device)
    stats = BatchNormStatistics(teacher)
    jitter = cfg.inversion_jitter
    try:
        for _ in range(cfg.inversion_iters):
            dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
            moved = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            stats.take()
            loss = F.cross_entropy(teacher(moved).logits, targets)
            loss = loss + cfg.bn_weight * stats.take() + cfg.tv_weight * total_variation(moved)
            if cfg.l2_weight:
                loss = loss + cfg.l2_weight * torch.norm(moved, 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        stats.close()
    return x.detach().cpu()


def synthesize_pool(teacher: nn.Module, cfg: Any, num_classes: int, shape: tuple[int, ...],
                    seed: int, ckpt_dir: Path, device: torch.device) -> tuple[Tensor, Tensor]:
    """`cfg.inversion_samples` images with balanced target labels; batches saved as they finish."""
    teacher.eval()
    was = [p.requires_grad for p in teacher.parameters()]
    teacher.requires_grad_(False)
    images, targets = [], []
    try:
        for k, start in enumerate(range(0, cfg.inversion_samples, cfg.inversion_batch)):
            path = Path(ckpt_dir) / f"batch{k:04d}.pt"
            saved = load_checkpoint(path)
            if saved is None:
                n = min(cfg.inversion_batch, cfg.inversion_samples - start)
                labels = torch.arange(start, start + n) % num_classes
                x = invert_batch(teacher, labels, shape, cfg,
                                 torch_generator(seed, "deep_inversion", k), device)
                save_atomic({"images": x, "targets": labels}, path)
                saved = {"images": x, "targets": labels}
                log.info("deep inversion: batch %d (%d images) done", k, n)
            images.append(saved["images"])
            targets.append(saved["targets"])
    finally:
        for p, flag in zip(teacher.parameters(), was):
            p.requires_grad_(flag)
    return torch.cat(images), torch.cat(targets)

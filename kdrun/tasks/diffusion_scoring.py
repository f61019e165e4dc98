"""How task=diffusion scores samples: a Fréchet distance on a digits CNN's features ("FD").

FID (Heusel et al. 2017) compares Gaussians fitted to Inception features of generated and
real images; Inception's weights are a download (torch-fidelity fetches them at run time),
and it is made for 299 px photographs. Here the features are the embedding of a small
classifier (task.scorer, resnet8 by default) that kdrun trains once per data config on the
real images and keeps in the teacher cache, so the same scorer serves every cell and seed.
The numbers are "FD on a digits CNN", comparable with each other, not with published FIDs.

Each split (val, test) is a `ReferenceSplit`: its real images' feature statistics and a
fixed noise seed; a `Sampler` (a denoiser and its step count) generates task.fd_samples
images from that noise, and the split scores them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from kdrun.models.zoo.denoiser import Denoiser, ddim_sample

NOISE_SEEDS = {"val": 1001, "test": 1002}  # fixed: every epoch, round and cell sees the same noise


def feature_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)), the trace of the root taken
    as the sum of the square roots of the eigenvalues of cov1^(1/2) cov2 cov1^(1/2)."""
    values, vectors = torch.linalg.eigh(cov1)
    root1 = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * middle)


class FeatureScorer:
    """A frozen classifier whose embedding of images in [0, 1] the distance compares."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int = 256):
        self.model, self.device, self.batch_size = model.to(device).eval(), device, batch_size

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        return torch.cat([self.model(chunk.to(self.device)).embedding.cpu()
                          for chunk in images.split(self.batch_size)])


class ReferenceSplit:
    """A val or test split as FD reference: iterating yields its batches (it stays a loader)."""

    def __init__(self, loader: Any, split: str, scorer: FeatureScorer, samples: int):
        self.loader, self.split, self.scorer, self.samples = loader, split, scorer, samples
        real = torch.cat([batch.x for batch in loader])
        self.shape = tuple(real.shape[1:])
        self.stats = feature_stats(scorer.features(real))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def noise(self, count: int | None = None) -> Tensor:
        generator = torch.Generator().manual_seed(NOISE_SEEDS[self.split])
        return torch.randn(count or self.samples, *self.shape, generator=generator)

    def fd(self, images: Tensor) -> float:
        """FD of generated images in [-1, 1] against this split's real images."""
        features = self.scorer.features(to_unit(images))
        return frechet_distance(*feature_stats(features), *self.stats)


class Sampler(nn.Module):
    """What a diffusion fit evaluates: a denoiser sampled with DDIM in `steps` steps (`skip`:
    not this epoch, see task.eval_every)."""

    def __init__(self, model: Denoiser, steps: int, batch_size: int = 256, skip: bool = False):
        super().__init__()
        self.model, self.steps, self.batch_size, self.skip = model, steps, batch_size, skip

    def generate(self, noise: Tensor, device: torch.device) -> Tensor:
        return torch.cat([ddim_sample(self.model, chunk.to(device), self.steps).cpu()
                          for chunk in noise.split(self.batch_size)])


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped (the scorer and the PNG read [0, 1])."""
    return ((images + 1) / 2).clamp(0, 1)


def scored_bundle(data: Any, scorer: FeatureScorer, samples: int) -> Any:
    """The data bundle with val and test as FD references."""
    return replace(data, val=ReferenceSplit(data.val, "val", scorer, samples),
                   test=ReferenceSplit(data.test, "test", scorer, samples))


def obtain_scorer(task_cfg: Any, data_cfg: Any, cache_dir: Path, device: torch.device,
                  progress: bool) -> tuple[FeatureScorer, dict[str, Any]]:
    """The feature classifier: trained once per data config (seed 0, classification, in the
    teacher cache) so every cell and seed is scored by the same network; and its record."""
    from kdrun.data import build_data
    from kdrun.engine.config import TeacherConfig
    from kdrun.engine.teachers import obtain_teacher
    from kdrun.tasks.classification import CLASSIFICATION

    spec = OmegaConf.structured(TeacherConfig(name=task_cfg.scorer))
    spec.train.epochs = task_cfg.scorer_epochs
    data = build_data(data_cfg, 0)
    record = obtain_teacher(spec, data_cfg, data, 0, cache_dir, device, progress=progress,
                            task=CLASSIFICATION)
    top1 = CLASSIFICATION.evaluate(record.model.to(device), data.test, device)["top1"]
    return FeatureScorer(record.model, device), {
        "model": task_cfg.scorer, "source": record.source, "key": record.key, "test_top1": top1}


def save_grid(images: Tensor, path: Path, upscale: int = 2) -> Path:
    """A square-ish grid of images in [-1, 1] as a PNG (nearest-neighbour upscaled)."""
    from torchvision.utils import save_image

    pixels = torch.nn.functional.interpolate(to_unit(images), scale_factor=upscale, mode="nearest")
    tmp = path.with_name(path.name + ".partial.png")
    save_image(pixels, tmp, nrow=max(1, int(len(images) ** 0.5)), padding=2, pad_value=1.0)
    tmp.replace(path)
    return path

"""Generator-based data-free distillation: the student learns from images a generator
synthesises from the teacher, never from a training sample.

DAFL (Chen et al., "Data-Free Learning of Student Networks", ICCV 2019): the teacher is a
fixed discriminator; the generator makes images the teacher answers confidently
(one-hot loss), with strong pre-logit activations (activation loss) and balanced
classes (information-entropy loss); generator and student step on the same batch.

DFAD (Fang et al., "Data-Free Adversarial Distillation", 2019): the generator seeks
"hard samples" that maximise the teacher-student discrepancy (mean absolute logit
difference); the student takes `student_steps` steps per generator step.

Both use the DCGAN-style generator of the two papers' code (GeneratorA): its last
BatchNorm without affine makes images with zero mean and unit variance per channel,
the statistics kdrun's normalized inputs have.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.data.batch import Batch
from kdrun.data.seeds import torch_generator
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.models.output import ModelOutput


class Generator(nn.Module):
    """z (B, latent_dim) -> image (B, C, S, S): linear to S/4, two upsample-conv blocks."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64):
        super().__init__()
        self.init_size = image_size // 4
        self.project = nn.Linear(latent_dim, 2 * width * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(2 * width)
        self.block1 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
                                    nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(2 * width, width, 3, 1, 1), nn.BatchNorm2d(width),
                                    nn.LeakyReLU(0.2), nn.Conv2d(width, channels, 3, 1, 1),
                                    nn.Tanh(), nn.BatchNorm2d(channels, affine=False))
        self.image_size = image_size

    def forward(self, z: Tensor) -> Tensor:
        x = self.bn0(self.project(z).view(z.shape[0], -1, self.init_size, self.init_size))
        x = self.block1(F.interpolate(x, scale_factor=2))
        x = self.block2(F.interpolate(x, scale_factor=2))
        if x.shape[-1] != self.image_size:  # image sizes not divisible by 4
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear")
        return x


def dafl_generator_loss(teacher: ModelOutput, one_hot: float, info_entropy: float,
                        activation: float) -> dict[str, Tensor]:
    """DAFL's three terms on the teacher's outputs for generated images (the reference
    code's log10 entropy, so its weights carry over)."""
    logits = teacher.logits
    mean_p = logits.softmax(1).mean(0)
    return {"oh": one_hot * F.cross_entropy(logits, logits.argmax(1)),
            "ie": info_entropy * (mean_p * torch.log10(mean_p.clamp_min(1e-12))).sum(),
            "a": activation * -teacher.embedding.abs().mean()}


def dfad_generator_loss(student: ModelOutput, teacher: ModelOutput) -> dict[str, Tensor]:
    """DFAD: the generator maximises the mean absolute logit discrepancy."""
    return {"adv": -F.l1_loss(student.logits, teacher.logits)}


GENERATOR_TERMS = {"dafl": ["oh", "ie", "a"], "dfad": ["adv"]}


class LatentLoader:
    """The 'training data' of a generator-based run: batches of latent codes z ~ N(0, I),
    drawn from (seed, epoch), and placeholder labels that the objective overwrites with
    the teacher's labels of the synthesised images (so train_top1 = agreement)."""

    def __init__(self, steps: int, batch_size: int, latent_dim: int, seed: int):
        self.steps, self.batch_size, self.latent_dim = steps, batch_size, latent_dim
        self.seed, self.epoch = seed, 0

    @property
    def num_samples(self) -> int:
        return self.steps * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        gen = torch_generator(self.seed, "latent", self.epoch)
        for step in range(self.steps):
            z = torch.randn(self.batch_size, self.latent_dim, generator=gen)
            index = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
            yield Batch(z, torch.zeros(self.batch_size, dtype=torch.long), index)


class GeneratorDistiller(Distiller):
    """Each step: the generator's update (its own Adam, inside the forward pass), then the
    student's terms (the selected losses) on a batch of generated images.

    The generator is frozen (requires_grad=False) outside its own step, so fit()'s
    optimizer holds only the student and the losses' parts; its optimizer state and
    the step counter are in the state_dict, so last.pt resumes exactly.
    """

    def __init__(self, student: nn.Module, losses: nn.ModuleDict, teacher: FrozenTeacher,
                 ce_weight: float, generator: Generator, cfg: Any, generator_lr: float):
        super().__init__(student, losses, None, ce_weight)
        self.generator, self.cfg = generator.requires_grad_(False), cfg
        self.g_optim = torch.optim.Adam(generator.parameters(), lr=generator_lr)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        object.__setattr__(self, "frozen", teacher)   # not a submodule: never trained or saved
        object.__setattr__(self, "teacher", self._serve)  # the losses' teacher: outputs below
        self._teacher_out: ModelOutput | None = None
        self.g_names = GENERATOR_TERMS[cfg.method]
        self.g_stats = torch.zeros(len(self.g_names) + 1, dtype=torch.float64)  # sums, steps

    def _serve(self, batch) -> ModelOutput:
        return self._teacher_out

    def _teach(self, x: Tensor) -> ModelOutput:
        """The teacher on synthetic images: eval mode, frozen weights; gradients reach x."""
        self.frozen.model.eval()
        return self.frozen.model(x)

    def _generator_step(self, terms: dict[str, Tensor]) -> None:
        params = list(self.generator.parameters())
        grads = torch.autograd.grad(sum(terms.values()), params)  # only the generator's grads
        for p, g in zip(params, grads):
            p.grad = g
        self.g_optim.step()
        self.g_optim.zero_grad(set_to_none=True)
        self.g_stats += torch.tensor([t.item() for t in terms.values()] + [1.0], dtype=torch.float64)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        method = self.cfg.method
        self.generator.requires_grad_(True)
        try:
            if method == "dafl":  # generator and student share the batch
                images = self.generator(batch.x)
                teacher_out = self._teach(images)
                g_terms = dafl_generator_loss(teacher_out, self.cfg.one_hot,
                                              self.cfg.info_entropy, self.cfg.activation)
                self._generator_step(g_terms)
                images, teacher_out = images.detach(), teacher_out.detach()
            else:  # dfad: a generator step after every `student_steps` student steps
                if self.steps_done > 0 and self.steps_done % self.cfg.student_steps == 0:
                    z = torch.randn_like(batch.x)
                    fake = self.generator(z)
                    g_terms = dfad_generator_loss(self.student(fake), self._teach(fake))
                    self._generator_step(g_terms)
                with torch.no_grad():
                    images = self.generator(batch.x)
                    teacher_out = self._teach(images)
        finally:
            self.generator.requires_grad_(False)
        self.steps_done += 1
        self._teacher_out = teacher_out
        labels = teacher_out.logits.argmax(1)
        batch.y.copy_(labels)  # the loop's train_top1 then counts agreement with the teacher
        return super().forward(Batch(images, labels, batch.index))

    def epoch_metrics(self) -> dict[str, float]:
        """The generator's loss terms averaged over this epoch's generator steps."""
        stats, self.g_stats = self.g_stats, torch.zeros_like(self.g_stats)
        if stats[-1] == 0:
            return {}
        return {f"gen/{k}": (stats[i] / stats[-1]).item() for i, k in enumerate(self.g_names)}

    def get_extra_state(self) -> dict:
        return {"g_optim": self.g_optim.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.g_optim.load_state_dict(state["g_optim"])

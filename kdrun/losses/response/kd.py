"""kd: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

The student matches the teacher's temperature-softened class distribution:
    alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))   (batchmean)
and the engine weighs the label cross-entropy by 1 - alpha. The T^2 factor keeps
gradient magnitudes comparable across temperatures, as the paper prescribes.

`divergence` swaps the match on the softened p_t, p_s (forward_kl is Hinton's):
    forward_kl  KL(p_t || p_s)                      (mode-covering; the paper's)
    reverse_kl  KL(p_s || p_t)                      (mode-seeking)
    js          0.5 KL(p_t || m) + 0.5 KL(p_s || m), m = (p_t + p_s) / 2
    tvd         0.5 * sum_k |p_t,k - p_s,k|         (in [0, 1])
Scaling: Hinton's T^2 undoes the 1/T^2 by which the gradient of a KL on softened
logits shrinks. JS is a mixture of KLs and its gradient shrinks the same way, so it
keeps T^2. TVD is first order in p_s - p_t: its gradient shrinks only as 1/T, so it
is multiplied by T (not T^2), which keeps its strength comparable across temperatures.

Peers differ: torchdistill 1.1.5's KDLoss puts alpha on the cross-entropy
(its alpha is our 1 - alpha).

Tokens (task=lm): logits (B, T, V) are next-token distributions, one per position, and
the same divergences are taken per token and averaged over the counted tokens
(batch.y != IGNORE_INDEX: padding and prompt tokens do not count) with kdrun.losses.tokens:
forward_kl is word-level KD (Kim & Rush 2016), reverse_kl MiniLLM's mode-seeking KL
(Gu et al., ICLR 2024; MiniLLM's code optimises it with a policy gradient over
sampled sequences, here it is the exact per-token reverse KL on the given batch),
js the generalized JSD at beta 0.5 (the symmetric JS above) and tvd as above, with
the same T^2 / T scaling and alpha weighting. Teacher logits may be log-probabilities
(a top-k cache): softmax does not mind. The vocabularies must agree, checked on the
probe outputs when the loss is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.data.batch import IGNORE_INDEX
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.tokens import generalized_jsd, token_kl, token_tvd, vocab_check

DIVERGENCES = ("forward_kl", "reverse_kl", "js", "tvd")


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(p_t || p_s) of the softened distributions, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def divergence(log_p_s: Tensor, log_p_t: Tensor, kind: str) -> Tensor:
    """Batch mean of `kind` between two (B, K) distributions given as log-probabilities."""
    def kl(log_q: Tensor, log_p: Tensor) -> Tensor:  # KL(p || q)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)

    if kind == "forward_kl":
        return kl(log_p_s, log_p_t)
    if kind == "reverse_kl":
        return kl(log_p_t, log_p_s)
    if kind == "js":
        log_m = torch.logaddexp(log_p_s, log_p_t) - math.log(2.0)
        return 0.5 * kl(log_m, log_p_t) + 0.5 * kl(log_m, log_p_s)
    if kind == "tvd":
        return 0.5 * (log_p_s.exp() - log_p_t.exp()).abs().sum(1).mean()
    raise ValueError(f"unknown divergence {kind!r}; use one of {', '.join(DIVERGENCES)}")


def temperature_factor(kind: str, temperature: float) -> float:
    """T^2 for the KL-type divergences, T for the first-order TVD (see the module docstring)."""
    return temperature if kind == "tvd" else temperature**2


def soft_divergence(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                    kind: str = "forward_kl") -> Tensor:
    """The scaled divergence of the softened distributions; forward_kl equals soft_kl."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return temperature_factor(kind, temperature) * divergence(log_p_s, log_p_t, kind)


def token_divergence(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                     temperature: float, kind: str = "forward_kl") -> Tensor:
    """soft_divergence per token of (B, T, V) logits, averaged over the tokens `mask` counts."""
    if kind in ("forward_kl", "reverse_kl"):
        direction = kind.removesuffix("_kl")
        return token_kl(student_logits, teacher_logits, mask, temperature, direction)
    if kind == "js":
        return generalized_jsd(student_logits, teacher_logits, mask, 0.5, temperature)
    if kind == "tvd":
        return token_tvd(student_logits, teacher_logits, mask, temperature)
    raise ValueError(f"unknown divergence {kind!r}; use one of {', '.join(DIVERGENCES)}")


@dataclass
class KDConfig(LossConfig):
    temperature: float = bounded(4.0, gt=0,
                                 why="the softmax temperature; Hinton uses 1-20, 4 is common")
    # weight of the distillation term; CE gets 1 - alpha
    alpha: float = bounded(0.9, ge=0, le=1,
                           why="it weighs the distillation term against the label cross-entropy")
    divergence: str = "forward_kl"    # forward_kl (Hinton) | reverse_kl | js | tvd


@register_loss
class KD(DistillationLoss):
    name = "kd"
    config = KDConfig
    tasks = ("classification", "lm")

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.divergence not in DIVERGENCES:
            raise ConfigError(f"{cls.key('divergence')}={cfg.divergence}: unknown divergence; "
                              f"use one of {', '.join(DIVERGENCES)} (forward_kl is Hinton's)")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        if student is not None and teacher is not None and student.logits.dim() == 3:
            vocab_check(student.logits.shape[-1], teacher.logits.shape[-1])

    @classmethod
    def ce_scale(cls, cfg):
        return 1.0 - cfg.alpha

    def forward(self, student, teacher, batch):
        if student.logits.dim() == 3:
            value = token_divergence(student.logits, teacher.logits, batch.y != IGNORE_INDEX,
                                     self.cfg.temperature, self.cfg.divergence)
        else:
            value = soft_divergence(student.logits, teacher.logits, self.cfg.temperature,
                                    self.cfg.divergence)
        return {"kd": self.cfg.alpha * value}

"""gkd: Agarwal et al., "On-Policy Distillation of Language Models: Learning from
Self-Generated Mistakes" (ICLR 2024).

Why: a student trained only on fixed sequences never sees its own mistakes, which it
meets at generation time (train-inference mismatch). GKD trains a fraction lambda of
the batches on continuations the student sampled itself, scored token by token by the
teacher, and lets the divergence be chosen: the generalized JSD
    JSD_beta(P || Q) = beta KL(P || M) + (1 - beta) KL(Q || M),  M = beta P + (1 - beta) Q
of teacher P and student Q at every counted token, averaged over them, times T^2
(kdrun.losses.tokens.generalized_jsd; beta = 0 is the forward KL, beta = 1 the reverse
KL, the TRL convention). The term is alpha * that; the engine's label CE gets 1 - alpha
(alpha = 1, the default, is pure GKD as in the paper: no label term).

Sampling is the engine's: its LM objective reads on_policy_fraction (the paper's
lambda, the student data fraction), prompt_tokens and sample_temperature from this
config (it finds the method by `on_policy`), replaces that fraction of batches by the
first prompt_tokens tokens of each sequence plus a student sample, without gradient
through the sampling (the paper's Algorithm 1), and marks the prompt IGNORE_INDEX. This
module only takes the divergence on the batch it is given, so on_policy_fraction = 0
(the default) is supervised KD with the JSD on the data's sequences; the paper finds
on-policy data (lambda = 1, or 0.5 mixed) works best. On-policy batches need the live
teacher: a cache cannot hold the teacher's outputs on fresh samples.

Peers differ: TRL's GKDTrainer (lmbda 0.5, beta 0.5) uses one temperature (0.9) for
sampling and for the loss, applies no T^2, and takes the prompt from the data set's
prompt/completion split rather than a fixed number of leading tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.tokens import generalized_jsd, vocab_check


@dataclass
class GKDConfig(LossConfig):
    beta: float = bounded(0.5, ge=0, le=1,
                          why="the generalized JSD's mixture weight: 0 forward KL, 1 reverse KL")
    temperature: float = bounded(1.0, gt=0, why="the softmax temperature of the divergence")
    # weight of the divergence; CE gets 1 - alpha (1: pure GKD, no label term)
    alpha: float = bounded(1.0, ge=0, le=1,
                           why="it weighs the divergence against the label cross-entropy")
    # the paper's lambda: fraction of training batches whose continuation the student samples
    on_policy_fraction: float = bounded(0.0, ge=0, le=1, why="a fraction of the training batches")
    # leading tokens of each sequence kept as the prompt when the student samples (not scored)
    prompt_tokens: int = bounded(16, ge=1, why="the student continues at least one prompt token")
    sample_temperature: float = bounded(1.0, gt=0, why="the student's sampling temperature")


@register_loss
class GKD(DistillationLoss):
    name = "gkd"
    config = GKDConfig
    tasks = ("lm",)          # token-level only
    on_policy = True         # the engine samples on_policy_fraction of the batches from the student

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        if student is not None and student.logits.dim() != 3:
            raise ConfigError(f"loss=gkd is token-level: it needs a language model (task=lm) whose "
                              f"logits are (B, T, V), got {tuple(student.logits.shape)}")
        if student is not None and teacher is not None:
            vocab_check(student.logits.shape[-1], teacher.logits.shape[-1])

    @classmethod
    def ce_scale(cls, cfg):
        return 1.0 - cfg.alpha

    def forward(self, student, teacher, batch):
        value = generalized_jsd(student.logits, teacher.logits, batch.y != IGNORE_INDEX,
                                self.cfg.beta, self.cfg.temperature)
        return {"gkd": self.cfg.alpha * value}

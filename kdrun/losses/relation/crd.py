"""crd: Tian, Krishnan & Isola, "Contrastive Representation Distillation" (ICLR 2020).

Linear heads map each model's pre-logit vector to feat_dim = 128, L2-normalised. For
each sample the student embedding is contrasted against the teacher embedding of the
same sample (positive) and of N = 16384 other samples (negatives), and symmetrically
with the teacher as anchor; scores are exp(<v, w> / T) with T = 0.07. The paper's
objective (default, `objective: nce`) is NCE against uniform noise over the n training
samples, with the partition Z estimated once on the first batch as mean(score) * n:
    - sum_i [log h(pos_i) + sum_neg log(1 - h(neg))] / b,  h = (s/Z) / (s/Z + N/n)
for each anchor; `objective: infonce` uses the softmax cross-entropy instead. The
loss is weight * (student-anchor + teacher-anchor) with weight (beta) = 0.8 (paper).

Negatives (`negatives`):
- memory_bank (paper): a bank with one row per training sample (LossContext.num_train),
  indexed by batch.index, rows refreshed with momentum 0.5; the positive and the
  negatives both come from the bank of the other model.
- queue: a MoCo-style FIFO of the last `queue_size` embeddings of each model (every
  entry is a negative); the positive is the other model's current embedding of the
  sample, detached. Memory no longer grows with the dataset.

Peers differ: RepDistiller (the authors' code) draws negatives only from samples of
other classes (its dataset knows every label up front); kdrun draws uniformly from all
other samples, as the paper's objective states, and skips only the sample itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.config.bounds import bounded
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.relation.contrast_memory import EmbeddingQueue, MemoryBank

NEGATIVES = ("memory_bank", "queue")
OBJECTIVES = ("nce", "infonce")


def nce_loss(scores: Tensor, num_data: int, eps: float = 1e-7) -> Tensor:
    """scores (B, 1 + K) = exp(<v, w> / T) / Z, column 0 the positive; noise 1 / num_data."""
    noise = (scores.shape[1] - 1) / num_data                 # K * P_n
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (neg + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def infonce_loss(logits: Tensor) -> Tensor:
    """logits (B, 1 + K) = <v, w> / T, column 0 the positive."""
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long,
                                               device=logits.device))


@dataclass
class CRDConfig(LossConfig):
    weight: float = bounded(0.8, gt=0)  # beta (paper)
    feat_dim: int = bounded(128, gt=0)
    num_negatives: int = bounded(16384, gt=0)  # N, negatives per anchor from the memory bank
    temperature: float = bounded(0.07, gt=0)
    momentum: float = bounded(0.5, ge=0, lt=1, why="the paper uses 0.5")  # memory-bank update
    negatives: str = "memory_bank"    # memory_bank | queue
    queue_size: int = bounded(16384, gt=0)  # queue only: negatives per anchor
    objective: str = "nce"            # nce (paper) | infonce


@register_loss
class CRD(DistillationLoss):
    name = "crd"
    config = CRDConfig
    requires = ("embedding",)

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        if context is None or context.num_train < 2:
            raise ConfigError("loss=crd needs the training-set size (LossContext.num_train >= 2) "
                              "for its noise distribution and memory bank")
        self.num_train = context.num_train
        self.embed_s = nn.Linear(student.embedding.flatten(1).shape[1], cfg.feat_dim)
        self.embed_t = nn.Linear(teacher.embedding.flatten(1).shape[1], cfg.feat_dim)
        if cfg.negatives == "memory_bank":
            self.memory = MemoryBank(context.num_train, cfg.feat_dim)
        else:
            self.memory = EmbeddingQueue(cfg.queue_size, cfg.feat_dim)
        self.register_buffer("z_student", torch.tensor(-1.0))   # NCE partitions, set once
        self.register_buffer("z_teacher", torch.tensor(-1.0))

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        for name, choices in (("negatives", NEGATIVES), ("objective", OBJECTIVES)):
            if getattr(cfg, name) not in choices:
                raise ConfigError(f"{cls.key(name)}={getattr(cfg, name)} is not one of "
                                  f"{', '.join(choices)}")

    def _objective(self, logits: Tensor, z: Tensor) -> Tensor:
        if self.cfg.objective == "infonce":
            return infonce_loss(logits)
        scores = torch.exp(logits)
        if z.item() < 0:                                      # first batch: estimate Z
            z.fill_(scores.detach().mean().item() * self.num_train)
        return nce_loss(scores / z, self.num_train)

    def forward(self, student, teacher, batch):
        cfg = self.cfg
        v_s = F.normalize(self.embed_s(student.embedding.flatten(1)), dim=1)
        v_t = F.normalize(self.embed_t(teacher.embedding.flatten(1).detach()), dim=1)
        if cfg.negatives == "memory_bank":
            if int(batch.index.max()) >= self.memory.num_rows:
                raise RuntimeError(f"crd: batch.index {int(batch.index.max())} is outside the "
                                   f"memory bank of {self.memory.num_rows} rows (num_train)")
            rows = self.memory.sample(batch.index, cfg.num_negatives)   # positive first
            logits_s = self.memory.scores(self.memory.teacher, rows, v_s) / cfg.temperature
            logits_t = self.memory.scores(self.memory.student, rows, v_t) / cfg.temperature
        else:
            pos_s = (v_s * v_t.detach()).sum(1, keepdim=True)
            pos_t = (v_t * v_s.detach()).sum(1, keepdim=True)
            logits_s = torch.cat([pos_s, v_s @ self.memory.teacher.t()], 1) / cfg.temperature
            logits_t = torch.cat([pos_t, v_t @ self.memory.student.t()], 1) / cfg.temperature
        loss = self._objective(logits_s, self.z_student) + self._objective(logits_t, self.z_teacher)
        if cfg.negatives == "memory_bank":
            self.memory.update(batch.index.to(v_s.device), v_s, v_t, cfg.momentum)
        else:
            self.memory.push(v_s, v_t)
        return {"crd": cfg.weight * loss}

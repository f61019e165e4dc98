"""Where CRD's negatives come from: a memory bank over the training set, or a FIFO queue.

Both hold L2-normalised embeddings of the student and of the teacher as buffers: they
are saved in last.pt with the model and never trained. Random draws use torch's
global CPU generator, whose state last.pt also holds, so a resumed run draws the
same negatives as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MemoryBank(nn.Module):
    """One row per training sample (CRD, after Wu et al. 2018), refreshed with momentum.

    Rows start uniform in [-1/sqrt(d/3), 1/sqrt(d/3)] (as in the CRD release) and row i
    is only ever written by a batch that contains sample i.
    """

    def __init__(self, num_rows: int, dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("student", (torch.rand(num_rows, dim) * 2 - 1) * bound)
        self.register_buffer("teacher", (torch.rand(num_rows, dim) * 2 - 1) * bound)

    @property
    def num_rows(self) -> int:
        return self.student.shape[0]

    def sample(self, index: Tensor, k: int) -> Tensor:
        """(B,) sample positions -> (B, 1 + k) rows: the sample itself, then k other rows
        drawn uniformly with replacement."""
        index = index.cpu()
        others = torch.randint(0, self.num_rows - 1, (index.shape[0], k))
        others = others + (others >= index.unsqueeze(1)).long()   # skip the sample itself
        return torch.cat([index.unsqueeze(1), others], 1).to(self.student.device)

    @staticmethod
    def scores(bank: Tensor, rows: Tensor, anchor: Tensor) -> Tensor:
        """(B, R) with <bank[rows[i, r]], anchor[i]>. Up to 16 R rows (CIFAR with R = 16384)
        the whole bank is scored by one matmul and then picked from, which beats gathering
        B x R rows by far; the bank is copied first, as `update` rewrites it before backward."""
        if bank.shape[0] <= 16 * rows.shape[1]:
            return (anchor @ bank.t().clone()).gather(1, rows)
        return (bank[rows] @ anchor.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def update(self, index: Tensor, student: Tensor, teacher: Tensor, momentum: float) -> None:
        for bank, new in ((self.student, student), (self.teacher, teacher)):
            mixed = bank.index_select(0, index) * momentum + new.detach() * (1 - momentum)
            bank.index_copy_(0, index, F.normalize(mixed, dim=1))


class EmbeddingQueue(nn.Module):
    """A fixed-size FIFO of the most recent embeddings (MoCo-style): memory does not grow
    with the dataset. Starts with random unit vectors, as MoCo's queue does."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("student", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("teacher", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.student.shape[0]

    @torch.no_grad()
    def push(self, student: Tensor, teacher: Tensor) -> None:
        n = min(student.shape[0], self.size)
        rows = (self.pointer + torch.arange(n, device=self.pointer.device)) % self.size
        # out of place: this step's graph still holds the old queue as its negatives
        self.student = self.student.index_copy(0, rows, student.detach()[-n:])
        self.teacher = self.teacher.index_copy(0, rows, teacher.detach()[-n:])
        self.pointer.copy_((self.pointer + n) % self.size)

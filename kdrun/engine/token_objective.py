"""The training objective of a language-model cell: the Distiller plus two ways of changing
what a batch holds before the terms are computed.

- On-policy batches (GKD, Agarwal et al. ICLR 2024): with probability `on_policy_fraction`
  a batch keeps only its first `prompt_tokens` tokens and the student samples the rest
  itself; the teacher (run live: no cache holds these tokens) scores the student's own
  continuation and the prompt is not scored. The draw uses torch's RNG, which last.pt
  saves, so a resumed run draws the same batches.
- Teacher targets (sequence-level KD, Kim & Rush EMNLP 2016): each training sequence is
  replaced by the teacher's own continuation of its prompt, generated once per cell
  (kdrun/cache/generations.py) and looked up by the batch's sequence index.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
from torch import Tensor, nn

from kdrun.data.batch import Batch, unscore_prompt
from kdrun.engine.distiller import Distiller


@torch.no_grad()
def student_rollout(student: nn.Module, batch: Batch, prompt_tokens: int,
                    temperature: float) -> Batch:
    """`batch` with everything after its first prompt_tokens tokens sampled by the student."""
    length = batch.x.shape[1]
    was_training = student.training
    full = student.generate(batch.x[:, :prompt_tokens], max_new_tokens=length + 1 - prompt_tokens,
                            temperature=temperature)
    student.train(was_training)
    return replace(batch, x=full[:, :length], y=unscore_prompt(full[:, 1:length + 1], prompt_tokens))


class TokenDistiller(Distiller):
    """Distiller for token sequences; see the module docstring for what it adds."""

    def __init__(self, student: nn.Module, losses: nn.ModuleDict, teacher: Callable | None,
                 ce_weight: float, label_loss: Callable, live_teacher: Callable | None = None,
                 on_policy: dict[str, float] | None = None, targets: Any = None):
        super().__init__(student, losses, teacher, ce_weight, label_loss=label_loss)
        object.__setattr__(self, "live_teacher", live_teacher)
        self.on_policy = on_policy or {}
        object.__setattr__(self, "targets", targets)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        if self.targets is not None:
            batch = self.targets.batch_for(batch)
        fraction = self.on_policy.get("fraction", 0.0)
        if self.training and fraction > 0 and torch.rand(()) < fraction:
            batch = student_rollout(self.student, batch, int(self.on_policy["prompt_tokens"]),
                                    self.on_policy["temperature"])
            return self.terms(batch, self.live_teacher(batch) if self.live_teacher else None)
        return super().forward(batch)

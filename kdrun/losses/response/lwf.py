"""lwf: Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), the old-head term.

While a model learns a new task, its outputs on every old task's head stay close to what
the model before the task gave for the same new-task images:
    sum over old heads h of T^2 KL(softmax(z_prev[h] / T) || softmax(z[h] / T))   (batchmean)
with T = 2 in the paper. Not a `loss=` option: algorithm=lifelong adds it per task.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from kdrun.losses.response.kd import soft_kl


def old_heads_kd(logits: Tensor, previous_logits: Tensor, heads: Sequence[Tensor],
                 temperature: float) -> Tensor:
    """The LwF term: the softened KD of the current model to the previous one on each old head."""
    return sum(soft_kl(logits[:, h], previous_logits[:, h], temperature) for h in heads)

"""On-the-fly native ensemble: Lan, Zhu & Gong, "Knowledge Distillation by On-the-Fly
Native Ensemble" (NeurIPS 2018).

One network whose low-level stages are shared and whose last stage(s) are
replicated into m branches (the paper: m = 3, the last block group branched).
A gate (global pooling of the shared trunk's output, FC, BN, ReLU, softmax) weighs
the branch logits into an ensemble teacher, z_e = sum_k g_k z_k, trained with its
own cross-entropy; every branch learns from the detached ensemble through the
selected response methods (loss=kd with temperature 3 is the paper's
T^2 KL(p_e || p_k) term) on top of its label cross-entropy. Branch 0 is the student
that is deployed.

kdrun builds the branches as whole copies of a zoo model whose stem and early
stages are the same module objects as branch 0's, so gradients from every branch
reach the shared trunk (as in the paper) and each branch stays a standalone model.
The trunk is recomputed per branch: same result as the paper's shared forward,
at (m - 1) extra trunk forwards per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.schemes.composition import logits_teacher, transfer_terms


def share_trunk(branches: list[nn.Module], branch_stages: int, model_name: str) -> int:
    """Make every branch use branch 0's stem and all but its last `branch_stages` stages.

    Returns the index (into ModelOutput.features) of the trunk's output.
    """
    base = branches[0]
    stages = getattr(base, "stages", None)
    if not hasattr(base, "stem") or not isinstance(stages, nn.ModuleList):
        raise ConfigError(f"scheme.method=one branches the last stages of a zoo model (one with "
                          f"a stem and stages); {model_name} has none: use scheme.method=dml")
    if not 1 <= branch_stages <= len(stages):
        raise ConfigError(f"scheme.branch_stages={branch_stages}: {model_name} has "
                          f"{len(stages)} stages; branch 1..{len(stages)} of them (the paper: 1)")
    shared = len(stages) - branch_stages
    for branch in branches[1:]:
        branch.stem = base.stem
        for s in range(shared):
            branch.stages[s] = base.stages[s]
    return shared  # features = [stem, stage 0, ...]: the trunk ends at stage shared - 1


class Gate(nn.Module):
    """The paper's gate: GAP -> FC -> BN -> ReLU -> softmax over the m branches."""

    def __init__(self, channels: int, branches: int):
        super().__init__()
        self.fc = nn.Linear(channels, branches)
        self.bn = nn.BatchNorm1d(branches)

    def forward(self, trunk: Tensor) -> Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(trunk, 1), 1)
        return F.softmax(F.relu(self.bn(self.fc(pooled))), dim=1)


class NativeEnsemble(nn.Module):
    """terms = {branch<k>/ce, branch<k>/<term> from the ensemble, ensemble/ce}."""

    def __init__(self, branches: list[nn.Module], trunk_index: int, gate: Gate,
                 losses: list[nn.ModuleDict], ce_weight: float = 1.0):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.gate = gate
        self.losses = nn.ModuleList(losses)
        self.trunk_index, self.ce_weight, self.epoch = trunk_index, ce_weight, 0

    @property
    def student(self) -> nn.Module:
        return self.branches[0]

    def predictor(self) -> nn.Module:
        return self.branches[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def ensemble(self, outs) -> Tensor:
        weights = self.gate(outs[0].features[self.trunk_index])
        return sum(weights[:, k:k + 1] * out.logits for k, out in enumerate(outs))

    def ensemble_logits(self, x: Tensor) -> Tensor:
        return self.ensemble([branch(x) for branch in self.branches])

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        outs = [branch(batch.x) for branch in self.branches]
        ensemble = self.ensemble(outs)
        teacher = logits_teacher(ensemble.detach())
        terms: dict[str, Tensor] = {"ensemble/ce": F.cross_entropy(ensemble, batch.y)}
        for k, out in enumerate(outs):
            if self.ce_weight > 0:
                terms[f"branch{k}/ce"] = self.ce_weight * F.cross_entropy(out.logits, batch.y)
            for key, value in transfer_terms(self.losses[k], out, teacher, batch,
                                             self.epoch).items():
                terms[f"branch{k}/{key}"] = value
        return terms, outs[0].logits.detach()

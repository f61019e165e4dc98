"""Deep mutual learning: Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning" (CVPR 2018).

K peers train together from scratch. Each peer i minimises its label
cross-entropy plus the mean over the other peers j of a mimicry term against
j's current, detached outputs (the paper's KL(p_j || p_i) / (K - 1)). In kdrun the
mimicry term is whatever the selected methods compute: loss=kd is DML's KL
(loss.kd.temperature=1 and alpha=0.5 give the paper's CE + KL, halved), loss=at or
loss=sp transfer attention maps or similarity matrices between peers instead.
Each ordered pair (i, j) has its own loss modules, sized from the two peers'
probe outputs, so heterogeneous peers (resnet20 with wrn_16_2) compose.

All peers train jointly in one objective with one optimizer (the paper
alternates peer updates within a step; updating all peers from the same
forward is the usual modern form and keeps one resumable checkpoint).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.schemes.composition import transfer_terms


def pair_key(i: int, j: int) -> str:
    """ModuleDict key of the loss modules through which peer j teaches peer i."""
    return f"{i}_from_{j}"


class MutualLearning(nn.Module):
    """terms = {peer<i>/ce, peer<i>/<term> averaged over the teaching peers j != i}."""

    def __init__(self, peers: list[nn.Module], losses: dict[str, nn.ModuleDict],
                 ce_weight: float = 1.0):
        super().__init__()
        self.peers = nn.ModuleList(peers)
        self.losses = nn.ModuleDict(losses)
        self.ce_weight = ce_weight
        self.epoch = 0

    @property
    def student(self) -> nn.Module:
        """Peer 0 is THE student: evaluated by fit, saved to best.pt."""
        return self.peers[0]

    def predictor(self) -> nn.Module:
        return self.peers[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        outs = [peer(batch.x) for peer in self.peers]
        taught = [out.detach() for out in outs]
        k = len(outs)
        terms: dict[str, Tensor] = {}
        for i, out in enumerate(outs):
            if self.ce_weight > 0:
                terms[f"peer{i}/ce"] = self.ce_weight * F.cross_entropy(out.logits, batch.y)
            for j in range(k):
                if j == i:
                    continue
                pair = transfer_terms(self.losses[pair_key(i, j)], out, taught[j], batch,
                                      self.epoch)
                for key, value in pair.items():
                    name = f"peer{i}/{key}"
                    share = value / (k - 1)
                    terms[name] = terms[name] + share if name in terms else share
        return terms, outs[0].logits.detach()

"""hidden: hidden-state transfer between language models of any width and depth.

TinyBERT (Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding",
Findings of EMNLP 2020), hidden-states loss: MSE(H_S W_h, H_T) with a learnable W_h from
the student's width to the teacher's, student block m paired with teacher block g(m)
by the uniform mapping g(m) = m * N / M. DistilBERT (Sanh et al., 2019) uses the cosine
distance 1 - cos(h_S, h_T) instead (distance=cosine), which aligns directions, not norms.

Here, per pair (student block i, teacher block j) of `layer_map`:
    mse:    mean_h (W_ij s - t)^2       cosine: 1 - cos(W_ij s, t)   (in [0, 2])
averaged over the counted tokens (batch.y != IGNORE_INDEX; a sentence batch's real tokens
under task=embed), then over the pairs, times
`weight`. The tokens are picked before the projection, so padding never enters.
An empty layer_map is TinyBERT's uniform mapping on 0-based blocks: student block i of
Ls -> teacher block round_half_up((i + 1) * Lt / Ls) - 1 (clamped at 0 when the student
is deeper); otherwise a list of [student_block, teacher_block] (negative: from the last).

Projection: always a learnable linear map per pair (with bias), initialised to the
identity when the widths agree. Always, because the paper's W_h is part of the
method and one code path serves every pair; identity at start, so a DistilBERT-style
student (same width, initialised from teacher blocks) begins at the direct match the
paper compares, and the map only moves if that helps.

Peers differ: TinyBERT's code shares one `fit_dense` across all layers, also matches the
embedding output (m = 0, not among our features) and takes the MSE over every position,
padding included. DistilBERT's code compares only the last hidden state, with no
projection (it needs equal widths), over all non-padding tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss

DISTANCES = ("mse", "cosine")
BLOCKS_FREE = "block indices, checked against the models when the loss is built"


def uniform_map(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """TinyBERT's uniform mapping on 0-based blocks, rounding half up (integer arithmetic)."""
    return [(i, max(((i + 1) * n_teacher * 2 + n_student) // (2 * n_student) - 1, 0))
            for i in range(n_student)]


def shown(layer_map: Sequence[Any]) -> list:
    """layer_map as plain lists, for messages."""
    return [list(p) if isinstance(p, Sequence) else p for p in layer_map]


def check_layer_map(layer_map: Sequence[Any], key: str) -> None:
    """Every entry is a [student_block, teacher_block] pair of integers."""
    for pair in layer_map:
        if not (isinstance(pair, Sequence) and len(pair) == 2
                and all(isinstance(i, int) and not isinstance(i, bool) for i in pair)):
            raise ConfigError(f"{key}={shown(layer_map)}: each entry is a pair "
                              "[student_block, teacher_block] of block indices, e.g. [[1, 3], [3, 11]]")


def layer_pairs(layer_map: Sequence[Sequence[int]], n_student: int, n_teacher: int,
                key: str) -> list[tuple[int, int]]:
    """(student block, teacher block) pairs, 0-based; empty layer_map = uniform mapping."""
    check_layer_map(layer_map, key)
    if not layer_map:
        return uniform_map(n_student, n_teacher)
    pairs = []
    for s, t in layer_map:
        for role, i, n in (("student", s, n_student), ("teacher", t, n_teacher)):
            if not -n <= i < n:
                raise ConfigError(f"{key}={shown(layer_map)}: {role} block {i} does not "
                                  f"exist; the {role} has {n} blocks (0..{n - 1}, or -1..-{n} from the last)")
        pairs.append((s % n_student, t % n_teacher))
    return pairs


def require_tokens(name: str, student: Any) -> None:
    """Token-level methods fail at build time on a model without per-token outputs: a language
    model's (B, T, V) logits, or a text encoder's (B, T, H) hidden states (task=embed)."""
    per_token = student is None or student.logits.dim() == 3 or (
        bool(student.features) and student.features[-1].dim() == 3)
    if not per_token:
        raise ConfigError(f"loss={name} is token-level: it needs a language model (task=lm) "
                          f"whose logits are (B, T, V), or a text encoder (task=embed), got "
                          f"{tuple(student.logits.shape)}")


def token_mask(batch: Any) -> Tensor:
    """The tokens a token-level term counts: a sentence batch's real tokens (batch.mask,
    task=embed), else the scored targets (batch.y != IGNORE_INDEX, task=lm)."""
    mask = getattr(batch, "mask", None)
    return mask if mask is not None else batch.y != IGNORE_INDEX


def projection(student_width: int, teacher_width: int) -> nn.Linear:
    """Learnable W_h (student H -> teacher H), the identity when the widths agree."""
    proj = nn.Linear(student_width, teacher_width)
    if student_width == teacher_width:
        with torch.no_grad():
            proj.weight.copy_(torch.eye(student_width))
            proj.bias.zero_()
    return proj


def hidden_distance(student: Tensor, teacher: Tensor, distance: str) -> Tensor:
    """Per-row distance of (N, H) hidden states: mean squared error or 1 - cosine."""
    if distance == "mse":
        return (student - teacher).pow(2).mean(-1)
    return 1.0 - F.cosine_similarity(student, teacher, dim=-1)


@dataclass
class HiddenConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    distance: str = "mse"             # mse (TinyBERT) | cosine (DistilBERT)
    # [[student_block, teacher_block], ...]; empty: TinyBERT's uniform mapping
    layer_map: List[List[int]] = bounded(factory=list, free=BLOCKS_FREE)


@register_loss
class Hidden(DistillationLoss):
    name = "hidden"
    config = HiddenConfig
    requires = ("logits", "features")
    tasks = ("lm", "embed")

    def __init__(self, cfg, student, teacher, context=None):
        super().__init__(cfg, student, teacher, context)
        require_tokens(self.name, student)
        self.pairs = layer_pairs(cfg.layer_map, len(student.features), len(teacher.features),
                                 self.key("layer_map"))
        self.projections = nn.ModuleList(
            projection(student.features[i].shape[-1], teacher.features[j].shape[-1])
            for i, j in self.pairs)

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.distance not in DISTANCES:
            raise ConfigError(f"{cls.key('distance')}={cfg.distance}: unknown distance; use "
                              f"{' or '.join(DISTANCES)} (mse is TinyBERT's, cosine DistilBERT's)")
        check_layer_map(cfg.layer_map, cls.key("layer_map"))

    def forward(self, student, teacher, batch):
        counted = token_mask(batch)
        values = []
        for (i, j), proj in zip(self.pairs, self.projections):
            s = proj(student.features[i][counted].to(proj.weight.dtype)).float()
            t = teacher.features[j].detach()[counted].float()
            values.append(hidden_distance(s, t, self.cfg.distance).sum() / max(s.shape[0], 1))
        return {"hidden": self.cfg.weight * torch.stack(values).mean()}

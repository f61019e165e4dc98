"""Several frozen teachers that teach as one: their logits combined, features picked or averaged.

The losses stay single-teacher: they receive one ModelOutput whose logits are

    mean      (1/K) sum_k z_k                  (You et al., KDD 2017; FedDF's AVGLOGITS)
    weighted  sum_k w_k z_k / sum_k w_k        (fixed weights, algorithm.weights)
    adaptive  sum_k a_ik z_ik, per sample i    (a from teacher confidence, CA-MKD:
              a_ik = (1 - softmax_k(CE(z_ik, y_i))) / (K - 1); Zhang, Chen & Wang, ICASSP 2022)

CA-MKD puts a_ik on each teacher's KL term; kdrun puts it on the logits so every loss
reads one teacher output. Features, embedding and pre-activations come from one
teacher (feature_teacher=k) or are averaged stage by stage (feature_teacher=mean,
which needs teachers whose outputs match in shape, e.g. one architecture).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.models.output import ModelOutput

ENSEMBLES = ("mean", "weighted", "adaptive")


def confidence_weights(logits: Tensor, labels: Tensor) -> Tensor:
    """(K, B, C) teacher logits, (B,) labels -> (K, B) CA-MKD weights, summing to 1 per sample:
    a teacher whose cross-entropy on the true label is low weighs more."""
    k, b, _ = logits.shape
    if k == 1:
        return logits.new_ones(1, b)
    ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat(k), reduction="none").view(k, b)
    return (1.0 - ce.softmax(0)) / (k - 1)


def combine_logits(logits: Tensor, mode: str, weights: Sequence[float] | None = None,
                   labels: Tensor | None = None) -> Tensor:
    """(K, B, C) -> (B, C): the ensemble's logits (see the module docstring)."""
    if mode == "mean":
        return logits.mean(0)
    if mode == "weighted":
        w = torch.as_tensor(list(weights), dtype=logits.dtype, device=logits.device)
        return (w.view(-1, 1, 1) * logits).sum(0) / w.sum()
    if mode == "adaptive":
        if labels is None:
            raise ValueError("adaptive teacher weights need the batch labels")
        return (confidence_weights(logits, labels).unsqueeze(-1) * logits).sum(0)
    raise ValueError(f"unknown ensemble {mode!r}; use one of {', '.join(ENSEMBLES)}")


def mean_output(outs: Sequence[ModelOutput]) -> ModelOutput:
    """Stage-by-stage mean of matched outputs (same shapes)."""
    def mean(tensors):
        return torch.stack(list(tensors)).mean(0)

    pre = None
    if all(o.preact_features is not None for o in outs):
        pre = [mean(stage) for stage in zip(*(o.preact_features for o in outs))]
    return ModelOutput(logits=mean(o.logits for o in outs),
                       features=[mean(stage) for stage in zip(*(o.features for o in outs))],
                       embedding=mean(o.embedding for o in outs), preact_features=pre)


def mismatch(outs: Sequence[ModelOutput]) -> str | None:
    """Why these outputs cannot be averaged stage by stage, or None when they can."""
    first = outs[0]
    for i, out in enumerate(outs[1:], start=1):
        if len(out.features) != len(first.features):
            return f"teacher {i} has {len(out.features)} stages, teacher 0 has {len(first.features)}"
        shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in zip(first.features, out.features)]
        shapes.append((tuple(first.embedding.shape), tuple(out.embedding.shape)))
        for a, b in shapes:
            if a != b:
                return f"teacher {i} gives a {b} output where teacher 0 gives {a}"
    return None


class TeacherEnsemble:
    """Callable like FrozenTeacher (batch -> ModelOutput): K teachers teaching as one.

    teachers: frozen callables (FrozenTeacher or CachedTeacher). feature_teacher: the
    index of the teacher whose features/embedding the losses see, or "mean".
    """

    def __init__(self, teachers: Sequence[Callable[[object], ModelOutput]], mode: str = "mean",
                 weights: Sequence[float] | None = None, feature_teacher: int | str = 0,
                 name: str = "ensemble"):
        self.teachers, self.mode, self.weights = list(teachers), mode, weights
        self.feature_teacher, self.name = feature_teacher, name

    @torch.no_grad()
    def __call__(self, batch) -> ModelOutput:
        outs = [teacher(batch) for teacher in self.teachers]
        logits = combine_logits(torch.stack([o.logits for o in outs]), self.mode, self.weights,
                                batch.y)
        source = mean_output(outs) if self.feature_teacher == "mean" else outs[self.feature_teacher]
        return ModelOutput(logits=logits, features=source.features, embedding=source.embedding,
                           preact_features=source.preact_features)


@torch.no_grad()
def ensemble_top1(models: Sequence[torch.nn.Module], loader, device: torch.device, mode: str = "mean",
                  weights: Sequence[float] | None = None) -> float:
    """Test top-1 of the ensemble's logits. `adaptive` weights need labels, which a test-time
    ensemble does not have: it is scored with mean logits."""
    mode = "mean" if mode == "adaptive" else mode
    for model in models:
        model.eval()
    correct = total = 0
    for batch in loader:
        batch = batch.to(device)
        logits = combine_logits(torch.stack([m(batch.x).logits for m in models]), mode, weights)
        correct += (logits.argmax(1) == batch.y).sum().item()
        total += batch.y.numel()
    return 100.0 * correct / max(total, 1)

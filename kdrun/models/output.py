"""The one contract that carries knowledge between models and losses."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class ModelOutput:
    """What every kdrun model returns.

    logits: (B, classes). features: stage tensors, shallow -> deep (stem first,
    last conv stage last), as the network passes them on (for pre-activation
    nets such as WRN these are residual sums, not post-ReLU maps).
    embedding: (B, D) the vector the classifier reads; it may come from a wider
    head conv than the last stage (mobilenetv2, shufflenetv2, timm models).
    preact_features: the same stages before their final ReLU, where the model
    knows them (the CIFAR zoo does; timm models give None).

    Language models (task=lm) fill the same fields per token: logits (B, T, vocab);
    features: the hidden state after each transformer block, (B, T, H) each, first block
    first; embedding: the final (normed) hidden state (B, T, H); attentions: each block's
    attention probabilities (B, heads, T, T), where the model computes them (else None).
    """

    logits: Tensor
    features: list[Tensor]
    embedding: Tensor
    preact_features: list[Tensor] | None = None
    attentions: list[Tensor] | None = None

    def detach(self) -> "ModelOutput":
        """A copy cut from the graph (teacher outputs, cached outputs)."""
        pre = None if self.preact_features is None else [f.detach() for f in self.preact_features]
        att = None if self.attentions is None else [a.detach() for a in self.attentions]
        return ModelOutput(self.logits.detach(), [f.detach() for f in self.features],
                           self.embedding.detach(), pre, att)

"""Any timm model as a kdrun model: logits, stage features and embedding at once.

Uses timm's `forward_intermediates` (stage outputs, shallow -> deep) and
`forward_head(pre_logits=True)`, so the classifier head is kept (timm's
`features_only` drops it, and KD needs logits). Inputs stay at their native
size (32 px for small data); nothing is upsampled.
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

from kdrun.models.output import ModelOutput


class TimmModel(nn.Module):
    def __init__(self, name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                 **kwargs):
        super().__init__()
        self.net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                     in_chans=in_chans, **kwargs)
        if not hasattr(self.net, "forward_intermediates"):
            raise ValueError(f"timm model {name!r} has no forward_intermediates, so kdrun cannot "
                             "read its stage features; pick another architecture")
        self.timm_name = name

    def get_classifier(self) -> nn.Module:
        return self.net.get_classifier()

    def forward(self, x: Tensor) -> ModelOutput:
        final, stages = self.net.forward_intermediates(x)
        embedding = self.net.forward_head(final, pre_logits=True)
        logits = self.net.get_classifier()(embedding)
        return ModelOutput(logits=logits, features=list(stages), embedding=embedding)

"""Channel adapters for relation losses whose matrices are indexed by channels (fsp, kdsvd).

FSP and KD-SVD compare channel-by-channel structures, so the paired student and
teacher stages must have equal widths. Same-width pairs (the papers' setting) stay
untouched; for any other pair the student stage goes through a ConvConnector
(1x1 conv + BN, sized from the probe) to the teacher's width.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from kdrun.losses.connectors import ConvConnector


def channel_adapters(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> nn.ModuleList:
    """One module per stage pair: Identity where channels agree, else a ConvConnector."""
    return nn.ModuleList(nn.Identity() if s.shape[1] == t.shape[1] else ConvConnector(s, t)
                         for s, t in zip(student, teacher))

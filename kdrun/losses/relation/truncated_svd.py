"""Leading right singular vectors with a gradient that survives rank-deficient features.

torch.linalg.svd's backward divides by s_i^2 - s_j^2 for every pair of singular
values, so a feature map with repeated (typically zero: dead ReLU channels)
singular values yields NaN gradients even when only the leading vectors are used.
The backward here is the same closed form (Townsend 2016, as in torch) restricted
to what the leading vectors need: terms whose denominator vanishes are dropped, as
the KD-SVD authors' TensorFlow gradient does. It is exact wherever torch's is finite.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _LeadingRightSingularVectors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, k: int) -> Tensor:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh.transpose(-2, -1)
        ctx.save_for_backward(u, s, v)
        return v[..., :k]

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        u, s, v = ctx.saved_tensors
        g = torch.zeros_like(v)
        g[..., :grad_v.shape[-1]] = grad_v
        vtg = v.transpose(-2, -1) @ g
        skew = vtg - vtg.transpose(-2, -1)
        s2 = s.pow(2)
        gap = s2.unsqueeze(-2) - s2.unsqueeze(-1)          # [j, k] = s_k^2 - s_j^2
        f = torch.where(gap.abs() > 1e-12 * s2.amax(-1, keepdim=True).unsqueeze(-1).clamp_min(1e-30),
                        1.0 / gap, torch.zeros_like(gap))
        inner = s.unsqueeze(-1) * (skew * f)                 # S (skew(V^T gV) o F)
        grad_x = u @ inner @ v.transpose(-2, -1)
        s_inv = torch.where(s > 0, 1.0 / s.clamp_min(1e-30), torch.zeros_like(s))
        residual = g.transpose(-2, -1) - (g.transpose(-2, -1) @ v) @ v.transpose(-2, -1)
        grad_x = grad_x + u @ (s_inv.unsqueeze(-1) * residual)   # U S^-1 gV^T (I - V V^T)
        return grad_x, None


def leading_right_singular_vectors(x: Tensor, k: int) -> Tensor:
    """(..., m, n) -> (..., n, k): the k leading right singular vectors, as columns."""
    return _LeadingRightSingularVectors.apply(x, k)

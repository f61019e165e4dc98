"""DeiT (Touvron et al., "Training data-efficient image transformers & distillation through
attention", ICML 2021): a ViT with a distillation token beside the class token.

timm's VisionTransformerDistilled at 32 px with 4-pixel patches (64 patches), from scratch.
`deit_tiny` keeps DeiT-Ti's width (192), heads (3) and MLP ratio (4); its 12 blocks are
`kwargs.depth` (a CPU recipe uses 4).

ModelOutput: logits: the class-token head; embedding: the class token's final state (what
that head reads); features: [the class and distillation tokens' final states, (B, 2, D)],
so loss=deit (kdrun/losses/response/deit.py) finds the distillation token there. The
distillation head itself belongs to loss=deit, which also makes the test-time prediction
the mean of both heads, as DeiT does; trained without it (loss=ce) the model is a ViT
whose class head alone predicts (the distillation token is then an extra learnt token).
"""

from __future__ import annotations

from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model


class DeiT(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, img_size: int, patch_size: int,
                 embed_dim: int, depth: int, num_heads: int, drop_path_rate: float = 0.1):
        super().__init__()
        from timm.models.deit import VisionTransformerDistilled

        self.vit = VisionTransformerDistilled(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, drop_path_rate=drop_path_rate,
            dynamic_img_size=True)
        self.vit.head_dist = nn.Identity()  # the distillation head is loss=deit's
        self.fc = self.vit.head

    def forward(self, x: Tensor) -> ModelOutput:
        tokens = self.vit.forward_features(x)        # (B, 2 + patches, D), final norm applied
        prefix = tokens[:, :2]                       # class token, distillation token
        embedding = prefix[:, 0]
        return ModelOutput(self.fc(embedding), [prefix], embedding)


@register_model
def deit_tiny(num_classes: int = 10, in_chans: int = 3, depth: int = 12, patch_size: int = 4,
              img_size: int = 32, drop_path_rate: float = 0.1) -> DeiT:
    """DeiT-Ti's width at 32 px: 192 wide, 3 heads, `depth` blocks (12 = 5.4 M parameters)."""
    return DeiT(num_classes, in_chans, img_size, patch_size, embed_dim=192, depth=depth,
                num_heads=3, drop_path_rate=drop_path_rate)

"""The student search space of algorithm=nas: a model family, scaled in depth and width.

One flat space (family x depth x width) that Hydra's optuna sweeper can sample:
    resnet_cifar  zoo CIFAR ResNet (He et al.): `depth` basic blocks per stage
                  (6 * depth + 2 layers), widths (16, 16, 32, 64) * width
    shufflenetv2  zoo ShuffleNetV2 (Ma et al.): round(u * depth / 3) units after each
                  stage's stride-2 unit for the paper's u = (3, 7, 3), widths
                  (116, 232, 464) and head 1024, times width (rounded to even);
                  depth 3, width 1 is the paper's 1x model
    timm_resnet   timm ResNet (BasicBlock): `depth` blocks in each of 4 stages,
                  channels (64, 128, 256, 512) * width
Models are built through the zoo's classes or kdrun's create_model, so every family
answers a ModelOutput and works with every loss.
"""

from __future__ import annotations

from torch import nn

from kdrun.config.errors import ConfigError
from kdrun.models.registry import create_model

FAMILIES = ("resnet_cifar", "shufflenetv2", "timm_resnet")


def _scaled(channels: tuple[int, ...], width: float, multiple: int = 1) -> list[int]:
    return [multiple * max(1, round(c * width / multiple)) for c in channels]


def check_architecture(family: str, depth: int, width: float) -> None:
    if family not in FAMILIES:
        raise ConfigError(f"algorithm.family={family}: unknown family; use one of "
                          f"{', '.join(FAMILIES)} (or null for the student= model as is)")
    if depth < 1:
        raise ConfigError(f"algorithm.depth={depth} must be >= 1 (blocks per stage)")
    if not width > 0:
        raise ConfigError(f"algorithm.width={width} must be > 0 (a channel multiplier)")


def architecture_name(family: str, depth: int, width: float) -> str:
    """A readable model name for result.json's `student` key, e.g. resnet_cifar_d2_w0.5."""
    return f"{family}_d{depth}_w{width:g}"


def build_architecture(family: str, depth: int, width: float, num_classes: int,
                       in_chans: int) -> nn.Module:
    check_architecture(family, depth, width)
    if family == "resnet_cifar":
        from kdrun.models.zoo.resnet_cifar import BasicBlock, CifarResNet

        stem, *widths = _scaled((16, 16, 32, 64), width)
        return CifarResNet(BasicBlock, [depth] * 3, widths, stem, num_classes, in_chans)
    if family == "shufflenetv2":
        *widths, head = _scaled((116, 232, 464, 1024), width, multiple=2)  # units split in half
        units = [max(1, round(u * depth / 3)) for u in (3, 7, 3)]
        return create_model("shufflenetv2", num_classes, in_chans, widths=tuple(widths),
                            units=tuple(units), head_width=head)
    return create_model("resnet18", num_classes, in_chans, layers=[depth] * 4,
                        channels=_scaled((64, 128, 256, 512), width))

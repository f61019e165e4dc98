"""Schema of the label-free image data (task=ssl): an image data set plus its multi-crop views.

The views are data settings, not task settings, so the teacher cache keys them: a teacher
trained self-supervised on other views is another teacher. conf/data/ssl_digits.yaml extends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdrun.config.bounds import bounded
from kdrun.data.config import DataConfig


@dataclass
class MultiCropConfig:
    """Caron et al. 2020/2021 multi-crop: a few large (global) crops and several small (local)
    ones of each image, each a random resized crop, then flips and intensity jitter.
    Scales are fractions of the image area; sizes are output pixels."""

    global_crops: int = bounded(2, ge=1)
    global_size: int = bounded(32, ge=8, why="pixels; usually data.image_size")
    global_min_scale: float = bounded(0.4, gt=0, le=1, why="smallest area fraction of a global crop")
    local_crops: int = bounded(2, ge=0, why="0 turns multi-crop off")
    local_size: int = bounded(16, ge=8, why="pixels; smaller than views.global_size")
    local_min_scale: float = bounded(0.1, gt=0, le=1, why="smallest area fraction of a local crop")
    local_max_scale: float = bounded(0.4, gt=0, le=1, why="largest area fraction of a local crop")
    flip: bool = False                # mirror left-right (off for digits: a mirrored digit is another glyph)
    contrast: float = bounded(0.4, ge=0, lt=1, why="contrast factor drawn in [1 - c, 1 + c]")
    brightness: float = bounded(0.4, ge=0, why="shift drawn in [-b, b], in units of the data's std")


@dataclass
class SSLDataConfig(DataConfig):
    augment: bool = False             # the views replace the data set's own augmentation
    views: MultiCropConfig = field(default_factory=MultiCropConfig)


DATA_SCHEMA = ("ssl_image", SSLDataConfig)  # schema/data/ssl_image (kdrun/data/schemas.py)

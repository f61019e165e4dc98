"""Schema of the segmentation data options (task=segmentation); conf/data/seg_*.yaml extend it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from kdrun.config.bounds import bounded

ALL = "or null for one canvas per digit image of the split"


@dataclass
class SegDataConfig:
    name: str = "seg_digits"          # seg_digits (offline, kdrun/data/seg_digits.py) | cityscapes
    root: Optional[str] = None        # cityscapes: the folder holding leftImg8bit/ and gtFine/
    image_size: int = bounded(32, ge=16, why="canvas side in pixels")
    digits_per_canvas: int = bounded(3, ge=1, why="digits pasted on each canvas")
    # each pasted digit is resized from 8x8 to a side drawn from [min_digit_size, max_digit_size]
    min_digit_size: int = bounded(10, ge=4)
    max_digit_size: int = bounded(16, ge=4)
    # a digit's pixel takes its class where its intensity (0..1) is above this; else background
    threshold: float = bounded(0.35, gt=0, lt=1, why="intensity above which a pixel is the digit")
    batch_size: int = bounded(32, ge=1)
    eval_batch_size: int = bounded(128, ge=1)
    # digit images held out from train with `seed` (val canvases are built from them)
    val_fraction: float = bounded(0.1, gt=0, lt=1, why="e.g. data.val_fraction=0.1")
    # seg_digits: canvases per split; null = one per digit image (train 1294, val 144, test 359);
    # cityscapes: images per split (the first ones)
    max_train: Optional[int] = bounded(None, ge=1, why=ALL)
    max_val: Optional[int] = bounded(None, ge=1, why=ALL)
    max_test: Optional[int] = bounded(None, ge=1, why=ALL)
    normalize: bool = True            # seg_digits: the train canvases' mean/std
    # cityscapes: training crops (height, width) after a random 0.5-2x scale; val/test read whole
    crop_size: List[int] = bounded(factory=lambda: [512, 1024], ge=16)
    num_workers: int = bounded(0, ge=0)   # cityscapes: processes decoding PNGs


DATA_SCHEMA = ("segmentation", SegDataConfig)  # schema/data/segmentation (kdrun/data/schemas.py)

"""What an in-memory source hands to build_data: raw arrays, not yet split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RawArrays:
    """Images as (N, C, h, w) arrays of 0..max_value, labels as int arrays.

    test_images/test_labels are None when the dataset has no test set of its own
    (digits): splits.make_splits then carves a fixed test split out of train.
    crop_pad_divisor / hflip: the dataset's usual train augmentation, a random
    translation by up to image_size // crop_pad_divisor pixels and optional flip.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    max_value: float
    classes: tuple[str, ...]
    crop_pad_divisor: int = 8
    hflip: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train_images.shape[1])

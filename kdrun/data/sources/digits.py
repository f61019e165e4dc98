"""sklearn's 8x8 handwritten digits: 1,797 images, 10 classes, shipped with
scikit-learn, so the default job needs no download and no data folder."""

from __future__ import annotations

import numpy as np

from kdrun.data.config import DataConfig
from kdrun.data.sources.raw import RawArrays


def load_digits_arrays(cfg: DataConfig) -> RawArrays:
    """data.root and data.download are ignored: the data ships with scikit-learn."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    return RawArrays(images, digits.target.astype(np.int64), None, None,
                     max_value=16.0, classes=tuple(str(d) for d in range(10)),
                     crop_pad_divisor=16, hflip=False)  # a mirrored digit is another glyph

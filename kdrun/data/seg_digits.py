"""seg_digits: a semantic segmentation set made offline from sklearn's 8x8 digits.

    data = build_seg_digits(cfg.data, seed)   # DataBundle; batch.x (B, 1, H, W), batch.y (B, H, W)

Each canvas (image_size x image_size, one channel) holds `digits_per_canvas` digits,
each resized from 8x8 to a side drawn from [min_digit_size, max_digit_size] and pasted
at a random place (the brighter pixel stays where two overlap). Its mask gives a pixel
the class 1 + d of the digit d drawn there where that digit's intensity is above
`threshold` (the later digit wins an overlap) and 0, background, elsewhere: 11 classes.

Splits follow the image data (DESIGN.md, "Splits"): the digit images are split into a
fixed stratified 20% test pool (the same for every seed) and the rest, of which
val_fraction is held out with the seed. A split's canvases are made only of its own
digit images, so no test digit is ever trained on. Test canvases are drawn with a fixed
seed, so every cell of a sweep is scored on the same pixels; train and val with the
cell's seed. Canvas i starts with digit image i of its split, so the default canvas
count (one per image) shows every digit at least once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.bounds import check_bounds
from kdrun.config.errors import ConfigError
from kdrun.data.bundle import DataBundle
from kdrun.data.preprocess import channel_stats, normalize_
from kdrun.data.seeds import FIXED_SEED, numpy_rng
from kdrun.data.seg_config import SegDataConfig
from kdrun.data.splits import make_splits
from kdrun.data.tensor_loader import TensorLoader

BACKGROUND = 0
CLASSES = ("background", *(str(d) for d in range(10)))


def check_seg_config(cfg: SegDataConfig) -> None:
    """Ranges (bounded fields) and the digit sizes against the canvas, before anything is built."""
    check_bounds(cfg, "data.")
    if cfg.min_digit_size > cfg.max_digit_size:
        raise ConfigError(f"data.min_digit_size={cfg.min_digit_size} is above data.max_digit_size="
                          f"{cfg.max_digit_size}: make min_digit_size <= max_digit_size")
    if cfg.max_digit_size > cfg.image_size:
        raise ConfigError(f"data.max_digit_size={cfg.max_digit_size} does not fit the "
                          f"{cfg.image_size}-pixel canvas: use data.max_digit_size<={cfg.image_size}")


def paste_canvases(images: Tensor, labels: np.ndarray, count: int, cfg: SegDataConfig,
                   rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """`count` canvases (count, 1, S, S) in [0, 1] and their masks (count, S, S) int64 from
    digit `images` (N, 1, 8, 8) in [0, 1] with `labels` (N,)."""
    side = cfg.image_size
    sizes = range(cfg.min_digit_size, cfg.max_digit_size + 1)
    resized = {s: F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False)[:, 0]
               .clamp_(0, 1) for s in sizes}
    x = torch.zeros(count, 1, side, side)
    y = torch.full((count, side, side), BACKGROUND, dtype=torch.int64)
    for i in range(count):
        picks = [i % len(images), *rng.integers(0, len(images), cfg.digits_per_canvas - 1)]
        for pick in picks:
            s = int(rng.integers(cfg.min_digit_size, cfg.max_digit_size + 1))
            top, left = (int(v) for v in rng.integers(0, side - s + 1, 2))
            digit = resized[s][pick]
            window = x[i, 0, top:top + s, left:left + s]
            torch.maximum(window, digit, out=window)
            y[i, top:top + s, left:left + s][digit > cfg.threshold] = 1 + int(labels[pick])
    return x, y


def build_seg_digits(cfg: SegDataConfig, seed: int) -> DataBundle:
    """Splits, canvases and loaders; the same (cfg, seed) always gives the same data."""
    from sklearn.datasets import load_digits

    check_seg_config(cfg)
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    labels = digits.target.astype(np.int64)
    splits = make_splits(labels, None, val_fraction=cfg.val_fraction, seed=seed)
    made = {}
    for split, idx, limit, rng in (
            ("train", splits.train, cfg.max_train, numpy_rng(seed, "seg_train")),
            ("val", splits.val, cfg.max_val, numpy_rng(seed, "seg_val")),
            ("test", splits.test, cfg.max_test, numpy_rng(FIXED_SEED, "seg_test"))):
        made[split] = paste_canvases(images[idx], labels[idx], limit or len(idx), cfg, rng)
    mean, std = torch.zeros(1), torch.ones(1)
    if cfg.normalize:
        mean, std = channel_stats(made["train"][0])
        for x, _ in made.values():
            normalize_(x, mean, std)
    n_train = made["train"][1].shape[0]
    return DataBundle(
        name=cfg.name,
        train=TensorLoader(*made["train"], cfg.batch_size, shuffle=True,
                           drop_last=n_train > cfg.batch_size, seed=seed),
        train_plain=TensorLoader(*made["train"], cfg.eval_batch_size),
        val=TensorLoader(*made["val"], cfg.eval_batch_size),
        test=TensorLoader(*made["test"], cfg.eval_batch_size),
        num_classes=len(CLASSES), in_chans=1, image_size=cfg.image_size, classes=CLASSES,
        mean=tuple(mean.tolist()), std=tuple(std.tolist()))

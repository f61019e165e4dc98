"""Assemble a DataBundle for the in-memory sets (digits, fashion_mnist, cifar10/100).

Each split is converted once to float tensors at image_size and normalized with
the train split's statistics; the loaders then only slice and augment batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kdrun.data.augment import BatchAugment
from kdrun.data.bundle import DataBundle
from kdrun.data.config import DataConfig
from kdrun.data.preprocess import channel_stats, normalize_, to_float_images
from kdrun.data.sources import IN_MEMORY, RawArrays
from kdrun.data.splits import make_splits
from kdrun.data.tensor_loader import TensorLoader
from kdrun.data.validate import check_max_train


def _take(raw: RawArrays, images: np.ndarray, labels: np.ndarray, idx: np.ndarray,
          image_size: int) -> tuple[Tensor, Tensor]:
    return to_float_images(images[idx], raw.max_value, image_size), torch.from_numpy(labels[idx])


def build_memory_bundle(cfg: DataConfig, seed: int) -> DataBundle:
    raw = IN_MEMORY[cfg.name](cfg)
    check_max_train(cfg, raw.num_classes)
    splits = make_splits(raw.train_labels, raw.test_labels, val_fraction=cfg.val_fraction,
                         seed=seed, max_train=cfg.max_train, max_val=cfg.max_val,
                         max_test=cfg.max_test)
    test_images, test_labels = ((raw.train_images, raw.train_labels) if splits.test_from_train
                                else (raw.test_images, raw.test_labels))
    train = _take(raw, raw.train_images, raw.train_labels, splits.train, cfg.image_size)
    val = _take(raw, raw.train_images, raw.train_labels, splits.val, cfg.image_size)
    test = _take(raw, test_images, test_labels, splits.test, cfg.image_size)

    channels = raw.in_chans
    mean, std = torch.zeros(channels), torch.ones(channels)
    if cfg.normalize:
        mean, std = channel_stats(train[0])
        for images, _ in (train, val, test):
            normalize_(images, mean, std)

    augment = None
    if cfg.augment:
        pad = max(1, cfg.image_size // raw.crop_pad_divisor)
        augment = BatchAugment(pad=pad, hflip=raw.hflip, fill=(0.0 - mean) / std)
    n_train = len(splits.train)
    return DataBundle(
        name=cfg.name,
        train=TensorLoader(*train, cfg.batch_size, shuffle=True, drop_last=n_train > cfg.batch_size,
                           augment=augment, seed=seed, aug_views=cfg.aug_views),
        train_plain=TensorLoader(*train, cfg.eval_batch_size),
        val=TensorLoader(*val, cfg.eval_batch_size),
        test=TensorLoader(*test, cfg.eval_batch_size),
        num_classes=raw.num_classes, in_chans=channels, image_size=cfg.image_size,
        classes=raw.classes, mean=tuple(mean.tolist()), std=tuple(std.tolist()),
    )

"""Assemble a DataBundle for data.name=imagefolder (images decoded per batch).

Train: RandomResizedCrop + flip; eval: resize to 1.14 x image_size, center crop
(the usual ImageNet recipe). Normalization statistics are estimated on up to
STATS_SAMPLES evenly spaced train images, so building stays cheap on large folders.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import transforms as T

from kdrun.data.bundle import DataBundle
from kdrun.data.config import DataConfig
from kdrun.data.folder_loader import FolderLoader, IndexedImages
from kdrun.data.preprocess import channel_stats
from kdrun.data.sources.imagefolder import load_folder_samples
from kdrun.data.splits import make_splits
from kdrun.data.validate import check_max_train

STATS_SAMPLES = 256
EVAL_RESIZE = 1.14


def _estimate_stats(samples: list[tuple[str, int]], plain: T.Compose) -> tuple[torch.Tensor, torch.Tensor]:
    picks = np.unique(np.linspace(0, len(samples) - 1, min(STATS_SAMPLES, len(samples))).round().astype(int))
    images = IndexedImages([samples[i] for i in picks], plain, random=False, seed=0)
    return channel_stats(torch.stack([images[i][0] for i in range(len(images))]))


def build_folder_bundle(cfg: DataConfig, seed: int) -> DataBundle:
    found = load_folder_samples(cfg)
    check_max_train(cfg, len(found.classes))
    splits = make_splits(found.train_labels, found.test_labels, val_fraction=cfg.val_fraction,
                         seed=seed, max_train=cfg.max_train, max_val=cfg.max_val,
                         max_test=cfg.max_test)
    train = [found.train[i] for i in splits.train]
    val = [found.train[i] for i in splits.val]
    test = [found.test[i] for i in splits.test]

    size = cfg.image_size
    plain = [T.Resize(int(size * EVAL_RESIZE)), T.CenterCrop(size), T.ToTensor()]
    mean, std = torch.zeros(3), torch.ones(3)
    if cfg.normalize:
        mean, std = _estimate_stats(train, T.Compose(plain))
    norm = [T.Normalize(mean.tolist(), std.tolist())]
    eval_tf = T.Compose(plain + norm)
    train_tf = (T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()] + norm)
                if cfg.augment else eval_tf)

    def loader(samples, transform, batch_size, **kw) -> FolderLoader:
        return FolderLoader(samples, transform, batch_size, seed=seed, num_workers=cfg.num_workers, **kw)

    return DataBundle(
        name=cfg.name,
        train=loader(train, train_tf, cfg.batch_size, shuffle=True, random_transform=cfg.augment,
                     drop_last=len(train) > cfg.batch_size),
        train_plain=loader(train, eval_tf, cfg.eval_batch_size),
        val=loader(val, eval_tf, cfg.eval_batch_size),
        test=loader(test, eval_tf, cfg.eval_batch_size),
        num_classes=len(found.classes), in_chans=3, image_size=size, classes=found.classes,
        mean=tuple(mean.tolist()), std=tuple(std.tolist()),
    )

"""cityscapes: Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding"
(CVPR 2016), the 19 evaluation classes, for the GPU recipe (recipes/seg_gpu/).

    data = build_cityscapes(cfg.data, seed)   # batch.x (B, 3, H, W), batch.y (B, H, W)

Reads the official layout under data.root (leftImg8bit/<split>/<city>/*_leftImg8bit.png and
gtFine/<split>/<city>/*_gtFine_labelIds.png, listed by torchvision.datasets.Cityscapes); the
label ids become the 19 train ids, every other id IGNORE_INDEX (not scored). Splits follow
DESIGN.md: test is the official val set (500 images; the official test labels are withheld),
val is data.val_fraction of the official train set drawn with the seed.

Training images are scaled by a factor in [0.5, 2.0], cropped to data.crop_size (padded with
IGNORE_INDEX where the scaled image is smaller) and flipped half the time, each draw seeded by
(seed, epoch, index) so a resumed cell sees the same pixels; val and test images are read
whole. Inputs are normalised with ImageNet's mean/std (the backbones' convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.data.bundle import DataBundle
from kdrun.data.epoch_order import EpochOrder
from kdrun.data.seeds import derive_seed, numpy_rng, torch_generator
from kdrun.data.seg_config import SegDataConfig

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCALES = (0.5, 2.0)


def train_id_table() -> tuple[Tensor, tuple[str, ...]]:
    """A 256-entry lookup from Cityscapes label ids to train ids (IGNORE_INDEX elsewhere), and
    the 19 class names in train-id order."""
    from torchvision.datasets import Cityscapes

    table = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
    names = {}
    for c in Cityscapes.classes:
        if 0 <= c.train_id < 19 and c.id >= 0:
            table[c.id] = c.train_id
            names[c.train_id] = c.name
    return table, tuple(names[i] for i in range(19))


class CityscapesImages(Dataset):
    """Item i: (normalised image (3, H, W), train-id mask (H, W), i)."""

    def __init__(self, pairs: list[tuple[str, str]], crop: tuple[int, int] | None, seed: int):
        self.pairs, self.crop, self.seed, self.epoch = pairs, crop, seed, 0
        self.table, _ = train_id_table()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from PIL import Image

        image_path, label_path = self.pairs[i]
        x = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32))
        x = x.permute(2, 0, 1) / 255.0
        y = self.table[torch.from_numpy(np.asarray(Image.open(label_path), dtype=np.int64))]
        if self.crop is not None:
            x, y = self.augment(x, y, torch_generator(self.seed, "seg_augment", self.epoch, i))
        x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        return x, y, i

    def augment(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Random scale, crop (padded with IGNORE_INDEX) and horizontal flip."""
        scale = SCALES[0] + (SCALES[1] - SCALES[0]) * torch.rand((), generator=g).item()
        size = (max(1, round(x.shape[1] * scale)), max(1, round(x.shape[2] * scale)))
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
        ch, cw = self.crop
        x = F.pad(x, (0, max(0, cw - size[1]), 0, max(0, ch - size[0])))
        y = F.pad(y, (0, max(0, cw - size[1]), 0, max(0, ch - size[0])), value=IGNORE_INDEX)
        top = int(torch.randint(0, y.shape[0] - ch + 1, (), generator=g))
        left = int(torch.randint(0, y.shape[1] - cw + 1, (), generator=g))
        x, y = x[:, top:top + ch, left:left + cw], y[top:top + ch, left:left + cw]
        if torch.rand((), generator=g).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


class ImageOrder(EpochOrder):
    """The DataLoader's sampler: one image index at a time, in kdrun's per-(seed, epoch) order,
    this rank's share of it under torchrun (EpochOrder.shard)."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.num_samples, self.shuffle, self.seed = n, shuffle, seed
        self.batch_size, self.drop_last = 1, False

    def __iter__(self):
        return iter(self._order().tolist())


def collate(items) -> Batch:
    xs, ys, idx = zip(*items)
    return Batch(torch.stack(xs), torch.stack(ys), torch.tensor(idx, dtype=torch.int64))


class CityscapesLoader:
    """set_epoch / len / iteration over Batch, deterministic per (seed, epoch) like TensorLoader."""

    aug_views = None

    def __init__(self, pairs, batch_size: int, *, crop=None, shuffle=False, drop_last=False,
                 seed: int = 0, num_workers: int = 0):
        self.dataset = CityscapesImages(pairs, crop, seed)
        self.sampler = ImageOrder(len(pairs), shuffle, seed)
        self.seed, self.epoch = seed, 0
        self._generator = torch_generator(seed, "workers", 0)
        self._loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.sampler,
                                  num_workers=num_workers, collate_fn=collate, drop_last=drop_last,
                                  generator=self._generator)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.dataset.epoch = self.sampler.epoch = int(epoch)

    def shard(self, rank: int, world: int) -> None:
        """torchrun: this rank reads every world-th image of each epoch's order."""
        self.sampler.shard(rank, world)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        self._generator.manual_seed(derive_seed(self.seed, "workers", self.epoch))
        return iter(self._loader)


@dataclass
class CityscapesBundle(DataBundle):
    """A DataBundle whose probe forward (connectors' sizes) sees one training crop."""

    input_shape: tuple[int, ...] = ()


def list_pairs(root: Path, split: str) -> list[tuple[str, str]]:
    from torchvision.datasets import Cityscapes

    try:
        found = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
    except RuntimeError as e:  # torchvision's "Dataset not found or incomplete ..."
        raise ConfigError(f"data.root={root}: no Cityscapes {split} split there ({e}); give the "
                          "folder holding leftImg8bit/ and gtFine/") from None
    return [(image, targets[0]) for image, targets in zip(found.images, found.targets)]


def build_cityscapes(cfg: SegDataConfig, seed: int) -> DataBundle:
    if not cfg.root:
        raise ConfigError("data=cityscapes needs data.root=<folder with leftImg8bit/ and gtFine/>")
    root = Path(cfg.root).expanduser()
    train_pairs, test_pairs = list_pairs(root, "train"), list_pairs(root, "val")
    order = numpy_rng(seed, "val").permutation(len(train_pairs))
    n_val = min(max(1, round(cfg.val_fraction * len(train_pairs))), len(train_pairs) - 1)
    val_pairs = [train_pairs[i] for i in sorted(order[:n_val])][:cfg.max_val]
    train_pairs = [train_pairs[i] for i in sorted(order[n_val:])][:cfg.max_train]
    test_pairs = test_pairs[:cfg.max_test]
    crop = tuple(cfg.crop_size)
    common = dict(seed=seed, num_workers=cfg.num_workers)
    _, names = train_id_table()
    return CityscapesBundle(
        name=cfg.name,
        train=CityscapesLoader(train_pairs, cfg.batch_size, crop=crop, shuffle=True,
                               drop_last=len(train_pairs) > cfg.batch_size, **common),
        train_plain=CityscapesLoader(train_pairs, cfg.eval_batch_size, **common),
        val=CityscapesLoader(val_pairs, cfg.eval_batch_size, **common),
        test=CityscapesLoader(test_pairs, cfg.eval_batch_size, **common),
        num_classes=19, in_chans=3, image_size=max(crop), classes=names, mean=MEAN, std=STD,
        input_shape=(3, *crop))

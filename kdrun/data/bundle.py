"""What build_data returns: the four loaders and the facts models need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from kdrun.data.folder_loader import FolderLoader
from kdrun.data.tensor_loader import TensorLoader

Loader = Union[TensorLoader, FolderLoader]


@dataclass
class DataBundle:
    """train: shuffled, augmented; train_plain: the same split in fixed order without
    augmentation (teacher-output caching); val, test: fixed order, eval batch size.

    mean/std: the per-channel statistics the inputs were normalized with (0 / 1 when
    data.normalize=false), for anything that must produce or undo normalized inputs.
    """

    name: str
    train: Loader
    train_plain: Loader
    val: Loader
    test: Loader
    num_classes: int
    in_chans: int
    image_size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": self.train.num_samples, "val": self.val.num_samples,
                "test": self.test.num_samples}

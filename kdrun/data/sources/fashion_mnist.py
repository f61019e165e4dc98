"""Fashion-MNIST (Xiao et al., 2017) read from its idx files with gzip + numpy.

The default root is where the Debian package dataset-fashion-mnist installs them;
kdrun never downloads Fashion-MNIST.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from kdrun.data.config import DataConfig
from kdrun.data.sources.raw import RawArrays

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally .gz) as a uint8 array of its declared shape."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_files(root: Path) -> list[Path] | None:
    """The four idx files in root (or in torchvision's root/FashionMNIST/raw), or None."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        found = [_find(folder, stem) for stem in FILES]
        if all(found):
            return found
    return None


def load_fashion_mnist_arrays(cfg: DataConfig) -> RawArrays:
    root = Path(cfg.root or DEFAULT_ROOT).expanduser()
    files = find_idx_files(root)
    if files is None:
        raise FileNotFoundError(
            f"data.root={root} has no Fashion-MNIST idx files: install the Debian package "
            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set data.root to "
            f"a folder holding {', '.join(stem + '.gz' for stem in FILES)}")
    train_x, train_y, test_x, test_y = (read_idx(f) for f in files)
    return RawArrays(train_x[:, None], train_y.astype(np.int64), test_x[:, None],
                     test_y.astype(np.int64), max_value=255.0, classes=CLASSES)

"""Images on disk in the ImageNet layout: root/train/<class>/*.jpg|png and
root/val/<class>/... (or root/test/<class>/...), read with torchvision.

val is still held out from train/ with the seed (DESIGN.md, "Splits"); the
val/ (or test/) folder is the test split. When both exist, test/ wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdrun.data.config import DataConfig

LAYOUT_HINT = "train/<class>/*.jpg|png and val/<class>/... (or test/<class>/...)"


@dataclass(frozen=True)
class FolderSamples:
    """(path, label) lists of the train/ folder and of the test folder."""

    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    classes: tuple[str, ...]

    @property
    def train_labels(self) -> np.ndarray:
        return np.array([y for _, y in self.train], dtype=np.int64)

    @property
    def test_labels(self) -> np.ndarray:
        return np.array([y for _, y in self.test], dtype=np.int64)


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _scan(folder: Path, classes: list[str], root: Path) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    to_index = {c: i for i, c in enumerate(classes)}
    try:
        return make_dataset(str(folder), to_index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"data.root={root}: {e} Put at least one image in every "
                                f"class folder, or remove the empty ones") from None


def load_folder_samples(cfg: DataConfig) -> FolderSamples:
    if not cfg.root:
        raise ValueError(f"data.root is required for data.name=imagefolder: set data.root=<folder> "
                         f"holding {LAYOUT_HINT}")
    root = Path(cfg.root).expanduser()
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(f"data.root={root} is not an image folder: data.name=imagefolder "
                                f"needs {LAYOUT_HINT}")
    train_classes, test_classes = _classes(train_dir), _classes(test_dir)
    if not train_classes:
        raise FileNotFoundError(f"data.root={root}: train/ has no class folders; "
                                f"data.name=imagefolder needs {LAYOUT_HINT}")
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise ValueError(f"data.root={root}: class folders differ between train/ and "
                         f"{test_dir.name}/ (only in train/: {only_train}; only in "
                         f"{test_dir.name}/: {only_test}): give both the same class folders")
    return FolderSamples(_scan(train_dir, train_classes, root), _scan(test_dir, train_classes, root),
                         tuple(train_classes))

"""CIFAR-10 / CIFAR-100 (Krizhevsky, 2009) read from the python-pickle batches.

Reading the pickles ourselves (not through torchvision) keeps tests able to build
tiny fake files; torchvision is used only to download, and only when the user
sets data.download=true. data.root is required: kdrun writes nowhere but
paths.cache_dir and paths.output_dir, so it has no default data folder.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdrun.data.config import DataConfig
from kdrun.data.sources.raw import RawArrays


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


LAYOUTS = {
    "cifar10": CifarLayout("CIFAR-10", "cifar-10-batches-py",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", "labels", "label_names", 10),
    "cifar100": CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test",
                            "meta", "fine_labels", "fine_label_names", 100),
}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the originals are Python 2 pickles


def _read_batches(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    entries = [_unpickle(p) for p in paths]
    images = np.concatenate([np.asarray(e["data"], dtype=np.uint8) for e in entries])
    labels = np.concatenate([np.asarray(e[label_key], dtype=np.int64) for e in entries])
    return images.reshape(-1, 3, 32, 32), labels


def _missing(folder: Path, layout: CifarLayout) -> list[str]:
    return [n for n in (*layout.train_files, layout.test_file) if not (folder / n).is_file()]


def _download(root: Path, name: str) -> None:
    """Fetch and unpack the archive into root with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)


def load_cifar_arrays(cfg: DataConfig) -> RawArrays:
    layout = LAYOUTS[cfg.name]
    if not cfg.root:
        raise ValueError(
            f"data.root is required for data.name={cfg.name}: set data.root=<folder> holding "
            f"{layout.folder}/ (add data.download=true to fetch {layout.title} there)")
    root = Path(cfg.root).expanduser()
    folder = root / layout.folder
    if _missing(folder, layout) and cfg.download:
        _download(root, cfg.name)
    missing = _missing(folder, layout)
    if missing:
        raise FileNotFoundError(
            f"data.root={root} has no {layout.title} batches ({layout.folder}/ lacks "
            f"{', '.join(missing)}): set data.download=true to fetch them there (needs internet), "
            f"or point data.root at a folder that holds {layout.folder}/")
    train_x, train_y = _read_batches([folder / n for n in layout.train_files], layout.label_key)
    test_x, test_y = _read_batches([folder / layout.test_file], layout.label_key)
    classes = tuple(str(c) for c in range(layout.num_classes))
    if (folder / layout.meta_file).is_file():
        names = _unpickle(folder / layout.meta_file).get(layout.names_key)
        if names is not None and len(names) == layout.num_classes:
            classes = tuple(names)
    return RawArrays(train_x, train_y, test_x, test_y, max_value=255.0, classes=classes)

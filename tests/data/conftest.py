"""Fake dataset files for tests (tiny CIFAR pickles, PNG image folders), handed out as
fixtures so test modules need not import conftest; and the guard for the real
Fashion-MNIST files (skip when missing, fail under CI=true)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import require_fashion_mnist

from kdrun.data import DataConfig, build_data


def _write_cifar_pickle(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"data": images.reshape(len(images), -1), label_key: labels.tolist()}, f, protocol=2)


def _fake_cifar_arrays(rng: np.random.Generator, num_classes: int, per_class: int):
    labels = np.repeat(np.arange(num_classes), per_class)
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    return images, labels


def _write_fake_cifar(root: Path, name: str, train_per_class: int = 4, test_per_class: int = 2) -> None:
    """The on-disk layout torchvision's archives unpack to, with random pixels."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        for i in range(1, 6):
            _write_cifar_pickle(folder / f"data_batch_{i}", *_fake_cifar_arrays(rng, 10, train_per_class), "labels")
        _write_cifar_pickle(folder / "test_batch", *_fake_cifar_arrays(rng, 10, test_per_class), "labels")
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    else:
        folder = root / "cifar-100-python"
        _write_cifar_pickle(folder / "train", *_fake_cifar_arrays(rng, 100, train_per_class), "fine_labels")
        _write_cifar_pickle(folder / "test", *_fake_cifar_arrays(rng, 100, test_per_class), "fine_labels")


def _write_image_folder(root: Path, classes=("cat", "dog", "fox"), train_per_class: int = 8,
                       test_per_class: int = 2, test_dir: str = "val") -> Path:
    """root/train/<class>/*.png and root/<test_dir>/<class>/*.png, small random RGB images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), (test_dir, test_per_class)):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(12, 14, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def digits_bundle():
    """The default digits bundle (seed 0); tests must not mutate it."""
    return build_data(DataConfig(name="digits"), seed=0)


@pytest.fixture
def write_fake_cifar():
    return _write_fake_cifar


@pytest.fixture(scope="session")
def write_image_folder():
    return _write_image_folder


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """Debian's dataset-fashion-mnist folder; tests that read the real files take this
    fixture: they skip when it is missing, and fail instead under CI=true."""
    return require_fashion_mnist()

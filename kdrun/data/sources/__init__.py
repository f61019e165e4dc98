"""Dataset sources, one file each; in-memory ones return RawArrays."""

from __future__ import annotations

from typing import Callable

from kdrun.data.config import DataConfig
from kdrun.data.sources.cifar import load_cifar_arrays
from kdrun.data.sources.digits import load_digits_arrays
from kdrun.data.sources.fashion_mnist import load_fashion_mnist_arrays
from kdrun.data.sources.raw import RawArrays

IN_MEMORY: dict[str, Callable[[DataConfig], RawArrays]] = {
    "digits": load_digits_arrays,
    "fashion_mnist": load_fashion_mnist_arrays,
    "cifar10": load_cifar_arrays,
    "cifar100": load_cifar_arrays,
}
FOLDER = ("imagefolder",)
DATASETS = (*IN_MEMORY, *FOLDER)

__all__ = ["DATASETS", "FOLDER", "IN_MEMORY", "RawArrays"]

"""Fashion-MNIST from the Debian package's idx files (installed here and in CI)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kdrun.data import DataConfig, build_data
from kdrun.data.sources.fashion_mnist import DEFAULT_ROOT, FILES, read_idx


@pytest.fixture(scope="module")
def fashion():
    return build_data(DataConfig(name="fashion_mnist"), seed=0)


def test_loads_from_the_debian_package(fashion):
    assert (fashion.num_classes, fashion.in_chans, fashion.image_size) == (10, 1, 32)
    assert fashion.split_sizes == {"train": 54000, "val": 6000, "test": 10000}
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    batch = next(iter(fashion.train))
    assert batch.x.shape == (64, 1, 32, 32) and batch.x.dtype == torch.float32
    assert torch.bincount(fashion.test.labels).tolist() == [1000] * 10
    assert torch.bincount(fashion.val.labels).tolist() == [600] * 10


def test_normalized_and_augmented_with_flips(fashion):
    x = fashion.train_plain.images
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2
    batch = next(iter(fashion.train))
    assert (batch.x != x[batch.index]).flatten(1).any(1).float().mean() > 0.5
    assert torch.equal(batch.y, fashion.train_plain.labels[batch.index])


def test_read_idx_parses_header_and_plain_files(tmp_path):
    images = read_idx(Path(DEFAULT_ROOT) / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    for stem in FILES:  # uncompressed copies are accepted too
        with gzip.open(f"{DEFAULT_ROOT}/{stem}.gz") as src, open(tmp_path / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte"), images)
    small = build_data(DataConfig(name="fashion_mnist", root=str(tmp_path), image_size=28,
                                  max_train=200, max_val=50, max_test=100), seed=1)
    assert small.split_sizes == {"train": 200, "val": 50, "test": 100}
    assert next(iter(small.test)).x.shape == (100, 1, 28, 28)


def test_bad_magic_is_reported(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(bad)


def test_missing_files_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_data(DataConfig(name="fashion_mnist", root=str(tmp_path)), seed=0)
    message = str(err.value)
    assert f"data.root={tmp_path}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte.gz" in message

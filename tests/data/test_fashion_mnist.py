"""Fashion-MNIST: the idx parser and build_data end to end on small idx files written here
(no package needed), plus the real files of Debian's dataset-fashion-mnist when installed
(the `fashion_mnist_root` fixture skips without them, and fails under CI=true)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FASHION_MNIST_MISSING, require_fashion_mnist

from kdrun.data import DataConfig, build_data
from kdrun.data.augment import crop_at
from kdrun.data.sources.fashion_mnist import CLASSES, FILES, read_idx

TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 10   # 300 train, 100 t10k images


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """An idx file: magic 0x00000803 (images, 3 dims) or 0x00000801 (labels, 1 dim), the dims
    as big-endian uint32, then the uint8 data; gzip'd when `compress`."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path = path.with_name(path.name + ".gz") if compress else path
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def synthetic_split(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 random images, `per_class` of each of the 10 classes in shuffled order."""
    labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return images, labels


def write_fashion(root: Path, compress: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """The four files under their Debian names; returns the arrays by file stem."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        images, labels = synthetic_split(rng, per_class)
        arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"] = images, labels
    root.mkdir(parents=True, exist_ok=True)
    for stem in FILES:
        write_idx(root / stem, arrays[stem], compress)
    return arrays


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    return root, write_fashion(root)


@pytest.fixture(scope="module")
def small(small_root):
    return build_data(DataConfig(name="fashion_mnist", root=str(small_root[0])), seed=0)


# ---------------------------------------------------------------- small idx files written here

@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_read_idx_parses_header_gzip_and_plain(tmp_path, compress):
    arrays = write_fashion(tmp_path, compress=compress)
    for stem in FILES:
        path = tmp_path / (stem + ".gz" if compress else stem)
        got = read_idx(path)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[stem])
    assert read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else ""))).shape == (300, 28, 28)
    assert read_idx(tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if compress else ""))).shape == (100,)


def test_builds_splits_from_the_idx_files(small_root, small):
    _, arrays = small_root
    assert (small.num_classes, small.in_chans, small.image_size) == (10, 1, 32)
    assert small.classes == CLASSES
    # val_fraction 0.1 of the 300 train images, stratified: 3 of each class
    assert small.split_sizes == {"train": 270, "val": 30, "test": 100}
    assert torch.bincount(small.val.labels, minlength=10).tolist() == [3] * 10
    assert torch.bincount(small.train_plain.labels, minlength=10).tolist() == [27] * 10
    assert torch.bincount(small.test.labels, minlength=10).tolist() == [10] * 10
    # the test split is t10k, in file order
    np.testing.assert_array_equal(small.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    batch = next(iter(small.train))
    assert batch.x.shape == (64, 1, 32, 32) and batch.x.dtype == torch.float32
    assert next(iter(small.test)).x.shape[1:] == (1, 32, 32)


def test_normalized_with_train_statistics(small_root, small):
    x = small.train_plain.images
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2
    assert len(small.mean) == len(small.std) == 1
    # the same statistics applied to the test split (not its own): raw pixels map back
    raw = torch.from_numpy(small_root[1]["t10k-images-idx3-ubyte"][:1, None]).float() / 255
    resized = torch.nn.functional.interpolate(raw, size=32, mode="bilinear", antialias=True,
                                              align_corners=False)
    restored = small.test.images[:1] * small.std[0] + small.mean[0]
    assert float((restored - resized).abs().mean()) < 0.05


def test_augmented_with_translations_and_flips(small):
    """Every augmented image is a padded crop of its plain image, mirrored for about half."""
    plain = small.train_plain.images
    batch = next(iter(small.train))
    assert torch.equal(batch.y, small.train_plain.labels[batch.index])
    x, aug = plain[batch.index], batch.x
    assert (aug != x).flatten(1).any(1).float().mean() > 0.5
    pad, fill = 32 // 8, torch.tensor([(0.0 - small.mean[0]) / small.std[0]])
    n = len(x)
    kinds = []
    offsets = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    for flipped in (False, True):
        source = x.flip(-1) if flipped else x
        match = torch.zeros(n, dtype=torch.bool)
        for dy, dx in offsets:
            crop = crop_at(source, pad, fill, torch.full((n,), dy), torch.full((n,), dx))
            match |= torch.isclose(crop, aug, atol=1e-5).flatten(1).all(1)
        kinds.append(match)
    plain_crop, flipped_crop = kinds
    assert bool((plain_crop | flipped_crop).all())
    assert 0.2 < float(flipped_crop.float().mean()) < 0.8


def test_max_sizes_and_image_size(small_root):
    root, _ = small_root
    tiny = build_data(DataConfig(name="fashion_mnist", root=str(root), image_size=28,
                                 max_train=100, max_val=20, max_test=50), seed=1)
    assert tiny.split_sizes == {"train": 100, "val": 20, "test": 50}
    assert torch.bincount(tiny.train_plain.labels, minlength=10).tolist() == [10] * 10
    assert next(iter(tiny.test)).x.shape == (50, 1, 28, 28)


def test_plain_files_and_torchvision_layout_are_found(tmp_path):
    write_fashion(tmp_path / "plain", compress=False)
    assert build_data(DataConfig(name="fashion_mnist", root=str(tmp_path / "plain")), seed=0).split_sizes["test"] == 100
    write_fashion(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert build_data(DataConfig(name="fashion_mnist", root=str(tmp_path / "tv")), seed=0).split_sizes["test"] == 100


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


def test_guard_skips_without_the_package_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="dataset-fashion-mnist is not installed"):
        require_fashion_mnist(tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as err:
        require_fashion_mnist(tmp_path)
    assert str(err.value) == FASHION_MNIST_MISSING
    write_fashion(tmp_path)
    assert require_fashion_mnist(tmp_path) == tmp_path


# ---------------------------------------------------------------- the real files (Debian package)

@pytest.fixture(scope="module")
def fashion(fashion_mnist_root):
    return build_data(DataConfig(name="fashion_mnist", root=str(fashion_mnist_root)), seed=0)


def test_loads_from_the_debian_package(fashion):
    assert (fashion.num_classes, fashion.in_chans, fashion.image_size) == (10, 1, 32)
    assert fashion.split_sizes == {"train": 54000, "val": 6000, "test": 10000}
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    batch = next(iter(fashion.train))
    assert batch.x.shape == (64, 1, 32, 32) and batch.x.dtype == torch.float32
    assert torch.bincount(fashion.test.labels).tolist() == [1000] * 10
    assert torch.bincount(fashion.val.labels).tolist() == [600] * 10


def test_real_files_normalized_and_augmented(fashion):
    x = fashion.train_plain.images
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2
    batch = next(iter(fashion.train))
    assert (batch.x != x[batch.index]).flatten(1).any(1).float().mean() > 0.5


def test_read_idx_on_the_real_files(fashion_mnist_root):
    images = read_idx(Path(fashion_mnist_root) / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    labels = read_idx(Path(fashion_mnist_root) / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and int(labels.max()) == 9


def test_default_root_is_the_debian_package(fashion_mnist_root):
    assert str(fashion_mnist_root) == "/usr/share/datasets/fashion-mnist"
    assert os.path.isfile(Path(fashion_mnist_root) / "train-images-idx3-ubyte.gz")

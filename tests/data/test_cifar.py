"""CIFAR-10/100 from tiny fake pickle batches; the download path without a network."""

from __future__ import annotations

import pytest
import torch

from kdrun.data import DataConfig, build_data


@pytest.mark.parametrize("name, classes, train, test", [("cifar10", 10, 5 * 10 * 4, 10 * 2),
                                                        ("cifar100", 100, 100 * 4, 100 * 2)])
def test_reads_fake_batches(tmp_path, name, classes, train, test, write_fake_cifar):
    write_fake_cifar(tmp_path, name)
    b = build_data(DataConfig(name=name, root=str(tmp_path), batch_size=16, val_fraction=0.25), seed=0)
    assert (b.num_classes, b.in_chans, b.image_size) == (classes, 3, 32)
    assert b.split_sizes == {"train": train - train // 4, "val": train // 4, "test": test}
    batch = next(iter(b.train))
    assert batch.x.shape == (16, 3, 32, 32)
    assert torch.bincount(b.test.labels, minlength=classes).tolist() == [2] * classes
    x = b.train_plain.images
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert len(b.mean) == len(b.std) == 3


def test_pixels_and_labels_match_the_pickles(tmp_path, write_fake_cifar):
    write_fake_cifar(tmp_path, "cifar10")
    import pickle

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        entry = pickle.load(f)
    b = build_data(DataConfig(name="cifar10", root=str(tmp_path), normalize=False), seed=0)
    expected = torch.from_numpy(entry["data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.allclose(b.test.images, expected)
    assert b.test.labels.tolist() == entry["labels"]
    assert b.classes == tuple(f"c{i}" for i in range(10))


def test_resized_and_flipped(tmp_path, write_fake_cifar):
    write_fake_cifar(tmp_path, "cifar10")
    b = build_data(DataConfig(name="cifar10", root=str(tmp_path), image_size=16, batch_size=8), seed=0)
    batch = next(iter(b.train))
    assert batch.x.shape == (8, 3, 16, 16)
    assert torch.equal(batch.y, b.train_plain.labels[batch.index])


def test_root_is_required():
    with pytest.raises(ValueError, match=r"data.root is required for data.name=cifar100.*data.download=true"):
        build_data(DataConfig(name="cifar100"), seed=0)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_data(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    message = str(err.value)
    assert f"data.root={tmp_path}" in message and "data.download=true" in message
    assert "cifar-10-batches-py" in message


def test_download_goes_through_torchvision(tmp_path, monkeypatch, write_fake_cifar):
    import torchvision.datasets

    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_fake_cifar(tmp_path, "cifar100")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    b = build_data(DataConfig(name="cifar100", root=str(tmp_path), download=True), seed=0)
    assert calls == [(str(tmp_path), True)] and b.num_classes == 100
    build_data(DataConfig(name="cifar100", root=str(tmp_path), download=True), seed=0)
    assert len(calls) == 1  # files present: no second download

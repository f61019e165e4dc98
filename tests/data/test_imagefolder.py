"""imagefolder from tiny PNGs: splits, Batch with index, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from kdrun.data import Batch, DataConfig, build_data


def folder_cfg(root, **kw) -> DataConfig:
    base = dict(name="imagefolder", root=str(root), image_size=8, batch_size=4, eval_batch_size=5,
                val_fraction=0.25)
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def folder(tmp_path_factory, write_image_folder):
    return write_image_folder(tmp_path_factory.mktemp("images"))


def test_splits_and_batches(folder):
    b = build_data(folder_cfg(folder), seed=0)
    assert (b.num_classes, b.in_chans, b.image_size) == (3, 3, 8)
    assert b.classes == ("cat", "dog", "fox")
    assert b.split_sizes == {"train": 18, "val": 6, "test": 6}
    assert len(b.train) == 4 and len(b.test) == 2
    batch = next(iter(b.train))
    assert isinstance(batch, Batch) and batch.x.shape == (4, 3, 8, 8)
    assert batch.x.dtype == torch.float32 and batch.index.dtype == batch.y.dtype == torch.int64
    assert torch.equal(batch.y, b.train.labels[batch.index])
    plain = torch.cat([x.index for x in b.train_plain])
    assert torch.equal(plain, torch.arange(18))
    assert torch.bincount(b.test.labels).tolist() == [2, 2, 2]


def test_deterministic_per_epoch_and_augmented(folder):
    b = build_data(folder_cfg(folder), seed=0)
    b.train.set_epoch(1)
    state = torch.get_rng_state()
    first, second = list(b.train), list(b.train)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p.x, q.x) and torch.equal(p.index, q.index) for p, q in zip(first, second))
    b.train.set_epoch(2)
    assert not torch.equal(torch.cat([x.index for x in b.train]), torch.cat([x.index for x in first]))
    plain = {int(i): x for batch in b.train_plain for i, x in zip(batch.index, batch.x)}
    assert any(not torch.equal(x, plain[int(i)]) for i, x in zip(first[0].index, first[0].x))
    assert all(torch.equal(p.x, q.x) for p, q in zip(b.test, b.test))


def test_workers_give_the_same_batches(folder):
    one = build_data(folder_cfg(folder), seed=3)
    two = build_data(folder_cfg(folder, num_workers=2), seed=3)
    for loader in (one.train, two.train):
        loader.set_epoch(5)
    for p, q in zip(one.train, two.train):
        assert torch.equal(p.x, q.x) and torch.equal(p.index, q.index)


def test_test_folder_is_accepted(tmp_path, write_image_folder):
    write_image_folder(tmp_path, classes=("a", "b"), train_per_class=4, test_per_class=3, test_dir="test")
    b = build_data(folder_cfg(tmp_path, augment=False, normalize=False), seed=0)
    assert b.split_sizes["test"] == 6 and b.num_classes == 2
    assert b.mean == (0.0, 0.0, 0.0)
    x = next(iter(b.train)).x
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_missing_root(tmp_path):
    with pytest.raises(ValueError, match="data.root is required for data.name=imagefolder"):
        build_data(DataConfig(name="imagefolder"), seed=0)
    with pytest.raises(FileNotFoundError, match=rf"data.root={tmp_path}/nowhere is not an image folder"):
        build_data(folder_cfg(tmp_path / "nowhere"), seed=0)


def test_mismatched_class_folders(tmp_path, write_image_folder):
    write_image_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "val" / "b").rename(tmp_path / "val" / "c")
    with pytest.raises(ValueError) as err:
        build_data(folder_cfg(tmp_path), seed=0)
    message = str(err.value)
    assert f"data.root={tmp_path}" in message and "only in train/: ['b']" in message
    assert "only in val/: ['c']" in message


def test_empty_class_folder(tmp_path, write_image_folder):
    write_image_folder(tmp_path, classes=("a", "b"))
    for png in (tmp_path / "val" / "b").iterdir():
        png.unlink()
    with pytest.raises(FileNotFoundError, match=rf"data.root={tmp_path}.*every class folder"):
        build_data(folder_cfg(tmp_path), seed=0)

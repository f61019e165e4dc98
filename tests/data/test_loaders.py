"""In-memory loaders (digits): batch contract, determinism per (seed, epoch), index,
augmentation and normalization."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kdrun.data import Batch, DataConfig, build_data


def same_batches(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
                                    and torch.equal(x.index, y.index) for x, y in zip(a, b))


def test_bundle_facts(digits_bundle):
    b = digits_bundle
    assert (b.name, b.num_classes, b.in_chans, b.image_size) == ("digits", 10, 1, 32)
    assert b.split_sizes == {"train": 1294, "val": 144, "test": 359}
    assert b.classes == tuple(str(d) for d in range(10))


def test_batch_contract(digits_bundle):
    batch = next(iter(digits_bundle.train))
    assert batch.x.shape == (64, 1, 32, 32) and batch.x.dtype == torch.float32
    assert batch.y.shape == batch.index.shape == (64,)
    assert batch.y.dtype == batch.index.dtype == torch.int64
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.x, batch.x) and len(moved) == 64


def test_lengths_and_drop_last(digits_bundle):
    b = digits_bundle
    assert len(b.train) == 1294 // 64 == len(list(b.train))
    assert all(len(batch) == 64 for batch in b.train)
    assert len(b.val) == 1 and len(b.test) == 2 and len(b.train_plain) == 6
    assert sum(len(batch) for batch in b.test) == 359


def test_small_train_split_keeps_its_last_batch():
    b = build_data(DataConfig(name="digits", max_train=50, batch_size=64), seed=0)
    assert len(b.train) == 1 and len(next(iter(b.train))) == 50


def test_same_epoch_gives_identical_batches_and_epochs_differ(digits_bundle):
    train = digits_bundle.train
    train.set_epoch(3)
    first, second = list(train), list(train)
    assert same_batches(first, second)
    train.set_epoch(4)
    other = list(train)
    assert not torch.equal(first[0].index, other[0].index)
    train.set_epoch(3)
    assert same_batches(first, list(train))
    train.set_epoch(0)


def test_order_depends_only_on_seed_and_epoch():
    cfg = DataConfig(name="digits")
    a, b, c = build_data(cfg, seed=7), build_data(cfg, seed=7), build_data(cfg, seed=8)
    for loader in (a.train, b.train):
        loader.set_epoch(2)
    assert same_batches(list(a.train), list(b.train))
    c.train.set_epoch(2)
    assert not torch.equal(next(iter(a.train)).x, next(iter(c.train)).x)


def test_global_rng_untouched(digits_bundle):
    state = torch.get_rng_state()
    list(digits_bundle.train)
    assert torch.equal(state, torch.get_rng_state())


def test_train_covers_each_index_once_per_epoch(digits_bundle):
    seen = torch.cat([batch.index for batch in digits_bundle.train])
    assert len(seen) == len(set(seen.tolist())) == len(digits_bundle.train) * 64
    assert int(seen.max()) < digits_bundle.split_sizes["train"]


def test_index_points_at_the_stored_rows(digits_bundle):
    plain = digits_bundle.train_plain
    rows = torch.cat([batch.index for batch in plain])
    assert torch.equal(rows, torch.arange(digits_bundle.split_sizes["train"]))
    for batch in plain:
        assert torch.equal(batch.x, plain.images[batch.index])
        assert torch.equal(batch.y, plain.labels[batch.index])
    for batch in digits_bundle.train:  # augmented, but labels follow the index
        assert torch.equal(batch.y, plain.labels[batch.index])


def test_augmentation_changes_pixels_not_labels(digits_bundle):
    images = digits_bundle.train_plain.images
    batch = next(iter(digits_bundle.train))
    changed = (batch.x != images[batch.index]).flatten(1).any(1)
    assert changed.float().mean() > 0.5
    assert torch.equal(batch.y, digits_bundle.train_plain.labels[batch.index])


def test_no_augmentation_when_off_and_on_eval_loaders(digits_bundle):
    off = build_data(DataConfig(name="digits", augment=False), seed=0)
    batch = next(iter(off.train))
    assert torch.equal(batch.x, off.train_plain.images[batch.index])
    for loader in (digits_bundle.val, digits_bundle.test, digits_bundle.train_plain):
        assert loader.augment is None
        first, second = list(loader), list(loader)
        assert same_batches(first, second)
        assert torch.equal(first[0].index, torch.arange(len(first[0])))


def test_normalization_uses_train_statistics(digits_bundle):
    x = digits_bundle.train_plain.images
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    mean, std = digits_bundle.mean[0], digits_bundle.std[0]
    raw = build_data(DataConfig(name="digits", normalize=False), seed=0)
    assert raw.mean == (0.0,) and raw.std == (1.0,)
    assert torch.allclose((raw.test.images - mean) / std, digits_bundle.test.images, atol=1e-5)
    assert 0.0 <= float(raw.train_plain.images.min()) and float(raw.train_plain.images.max()) <= 1.0


def test_digits_test_split_is_the_same_for_every_seed():
    a, b = build_data(DataConfig(name="digits", normalize=False), 0), build_data(
        DataConfig(name="digits", normalize=False), 1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.val.images, b.val.images)


@pytest.mark.parametrize("image_size", [8, 16, 48])
def test_image_size_and_subsample(image_size):
    cfg = DataConfig(name="digits", image_size=image_size, max_train=100, max_val=30, max_test=40)
    b = build_data(cfg, seed=0)
    assert b.split_sizes == {"train": 100, "val": 30, "test": 40}
    assert next(iter(b.test)).x.shape[1:] == (1, image_size, image_size)
    assert torch.bincount(b.train_plain.labels).tolist() == [10] * 10


def test_config_is_not_mutated():
    cfg = DataConfig(name="digits")
    before = dataclasses.asdict(cfg)
    build_data(cfg, seed=0)
    assert dataclasses.asdict(cfg) == before


def test_accepts_the_structured_config_hydra_hands_over():
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(DataConfig(name="digits", max_train=100))
    assert build_data(cfg, seed=0).split_sizes["train"] == 100

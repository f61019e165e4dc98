"""A part's loaders keep the split's sample index; partition settings and the teacher cache key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from kdrun.cache.teachers import data_identity, teacher_key
from kdrun.config.errors import ConfigError
from kdrun.data import DataConfig, build_data
from kdrun.data.partition_view import (partition_bundle, partitions_of, restrict_loader,
                                       write_partitions)
from kdrun.engine.config import TeacherConfig


def dirichlet_cfg(**kw) -> DataConfig:
    return DataConfig(name="digits", partition="dirichlet", num_partitions=3, dirichlet_beta=0.5, **kw)


def test_part_batches_carry_the_split_index(digits_bundle):
    cfg = dirichlet_cfg()
    parts = partitions_of(digits_bundle, cfg, seed=0).parts
    part = partition_bundle(digits_bundle, cfg, 0, 1)
    assert part.val is digits_bundle.val and part.test is digits_bundle.test
    assert part.train.num_samples == part.train_plain.num_samples == len(parts[1])
    seen = []
    for batch in part.train_plain:
        assert torch.equal(batch.y, digits_bundle.train_plain.labels[batch.index])
        assert torch.equal(batch.x, digits_bundle.train_plain.images[batch.index])
        seen.append(batch.index)
    assert torch.equal(torch.cat(seen), torch.as_tensor(parts[1]))
    part.train.set_epoch(3)
    shuffled = torch.cat([b.index for b in part.train])
    assert set(shuffled.tolist()) <= set(parts[1].tolist())
    assert len(shuffled) == len(part.train) * 64  # drop_last like the whole split's loader
    assert all(torch.equal(b.y, digits_bundle.train.labels[b.index]) for b in part.train)


def test_part_replays_the_splits_stored_views():
    cfg = dirichlet_cfg(aug_views=2, max_train=200)
    data = build_data(cfg, seed=0)
    part = partition_bundle(data, cfg, 0, 0)
    batch = next(iter(part.train))
    whole = data.train.augment.apply_view(data.train.images[batch.index], data.train.views,
                                          batch.view, batch.index)
    assert torch.equal(batch.x, whole)  # the teacher-output cache's rows fit these pixels


def test_restrict_rejects_unknown_loaders():
    with pytest.raises(TypeError):
        restrict_loader(object(), np.arange(3), "x")


def test_missing_part_is_a_config_error(digits_bundle):
    with pytest.raises(ConfigError, match="partition 3 does not exist"):
        partition_bundle(digits_bundle, dirichlet_cfg(), 0, 3)


def test_partitions_json_records_sizes_and_histograms(digits_bundle, tmp_path):
    assert write_partitions(tmp_path, DataConfig(name="digits"), digits_bundle, 0) is None
    stats = write_partitions(tmp_path, dirichlet_cfg(), digits_bundle, 0)
    saved = json.loads((tmp_path / "partitions.json").read_text())
    assert saved == stats and saved["partition"] == "dirichlet" and saved["dirichlet_beta"] == 0.5
    assert [p["samples"] for p in saved["parts"]] == [sum(p["classes"]) for p in saved["parts"]]
    assert sum(p["samples"] for p in saved["parts"]) == digits_bundle.train.num_samples


def test_teacher_key_includes_the_partition_only_when_set():
    data_plain = OmegaConf.structured(DataConfig(name="digits"))
    data_parted = OmegaConf.structured(dirichlet_cfg())
    assert data_identity(data_plain) == data_identity(data_parted)  # the split is the same
    teacher = OmegaConf.structured(TeacherConfig(name="resnet8"))
    whole = teacher_key(teacher, data_plain, 0)
    assert teacher_key(teacher, data_parted, 0) == whole  # partitioning alone changes no teacher
    keys = set()
    for index in (0, 1):
        teacher.partition = index
        keys.add(teacher_key(teacher, data_parted, 0))
    data_parted.dirichlet_beta = 0.1
    keys.add(teacher_key(teacher, data_parted, 0))
    assert len(keys) == 3 and whole not in keys

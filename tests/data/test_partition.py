"""Partitions of the train split: disjoint, covering, seeded, skewed as asked."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kdrun.config.errors import ConfigError
from kdrun.data.partition import label_skew, make_partitions

LABELS = np.repeat(np.arange(10), 60)  # 600 samples, 10 balanced classes


def part_cfg(partition="iid", num_partitions=4, dirichlet_beta=0.5, shards_per_partition=2):
    return SimpleNamespace(partition=partition, num_partitions=num_partitions,
                           dirichlet_beta=dirichlet_beta, shards_per_partition=shards_per_partition)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
@pytest.mark.parametrize("public_fraction", [0.0, 0.1])
def test_parts_are_disjoint_and_cover_the_split(scheme, public_fraction):
    parts = make_partitions(part_cfg(scheme), LABELS, seed=0, public_fraction=public_fraction)
    assert len(parts.parts) == 4 and all(len(p) > 0 for p in parts.parts)
    groups = parts.parts + ([parts.public] if parts.public is not None else [])
    every = np.concatenate(groups)
    assert len(every) == len(set(every.tolist())) == len(LABELS)  # disjoint and covering
    assert all(np.array_equal(p, np.sort(p)) for p in groups)
    if public_fraction:
        assert len(parts.public) == 60 and np.bincount(LABELS[parts.public]).tolist() == [6] * 10


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_parts_depend_on_the_seed_only(scheme):
    a, b, c = (make_partitions(part_cfg(scheme), LABELS, seed=s).parts for s in (0, 0, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_parts_are_even_and_mixed():
    parts = make_partitions(part_cfg("iid"), LABELS, seed=0)
    assert [len(p) for p in parts.parts] == [150] * 4
    assert label_skew(parts, LABELS, 10) < 0.15


def test_dirichlet_skew_grows_as_beta_shrinks():
    skew = {beta: np.mean([label_skew(make_partitions(part_cfg("dirichlet", dirichlet_beta=beta),
                                                      LABELS, seed=s), LABELS, 10) for s in range(3)])
            for beta in (100.0, 1.0, 0.5, 0.1)}
    assert skew[100.0] < skew[1.0] < skew[0.5] < skew[0.1]
    assert skew[100.0] < 0.1 and skew[0.1] > 0.5


def test_shards_give_each_part_few_classes():
    parts = make_partitions(part_cfg("shards", num_partitions=5, shards_per_partition=2), LABELS, seed=0)
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts.parts)  # 10 shards of one class each
    assert [len(p) for p in parts.parts] == [120] * 5


@pytest.mark.parametrize("override, key", [
    ({"partition": "random"}, "data.partition=random"),
    ({"num_partitions": 0}, "data.num_partitions=0"),
    ({"dirichlet_beta": 0.0}, "data.dirichlet_beta=0.0"),
    ({"shards_per_partition": 0}, "data.shards_per_partition=0"),
    ({"partition": "none"}, "data.partition=none"),
    ({"num_partitions": 601}, "data.num_partitions=601"),
])
def test_bad_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        make_partitions(part_cfg(**{"partition": "iid", **override}), LABELS, seed=0)


def test_a_hopeless_dirichlet_draw_says_what_to_change():
    with pytest.raises(ConfigError, match="data.dirichlet_beta"):
        make_partitions(part_cfg("dirichlet", num_partitions=50, dirichlet_beta=0.001), LABELS, seed=0)

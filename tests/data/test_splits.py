"""Splits: disjoint, covering, stratified, seeded where DESIGN.md says so."""

from __future__ import annotations

import numpy as np
import pytest

from kdrun.data.splits import CARVED_TEST_FRACTION, make_splits, stratified_choice


def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


def class_fractions(labels, num_classes):
    return np.bincount(labels, minlength=num_classes) / len(labels)


def test_stratified_choice_keeps_class_proportions():
    labels = labels_of([500, 300, 200])
    idx = stratified_choice(labels, 100, np.random.default_rng(0))
    assert len(idx) == len(set(idx.tolist())) == 100
    assert np.bincount(labels[idx]).tolist() == [50, 30, 20]


def test_stratified_choice_covers_every_class_when_possible():
    labels = labels_of([1000, 3, 1])
    idx = stratified_choice(labels, 5, np.random.default_rng(0))
    assert set(labels[idx].tolist()) == {0, 1, 2}


def test_carved_test_split_is_disjoint_covering_and_stratified():
    labels = labels_of([180, 170, 160, 190])
    s = make_splits(labels, None, val_fraction=0.1, seed=3)
    assert s.test_from_train
    parts = [set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == set(range(len(labels)))
    assert len(s.test) == round(CARVED_TEST_FRACTION * len(labels))
    assert len(s.val) == round(0.1 * (len(labels) - len(s.test)))
    overall = class_fractions(labels, 4)
    for part in (s.train, s.val, s.test):
        np.testing.assert_allclose(class_fractions(labels[part], 4), overall, atol=0.02)


def test_carved_test_is_fixed_while_val_follows_the_seed():
    labels = labels_of([100] * 10)
    a = make_splits(labels, None, val_fraction=0.1, seed=0)
    b = make_splits(labels, None, val_fraction=0.1, seed=1)
    np.testing.assert_array_equal(a.test, b.test)
    assert set(a.val.tolist()) != set(b.val.tolist())
    again = make_splits(labels, None, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(a.val, again.val)
    np.testing.assert_array_equal(a.train, again.train)


def test_own_test_set_is_used_whole():
    train, test = labels_of([50] * 4), labels_of([10] * 4)
    s = make_splits(train, test, val_fraction=0.2, seed=0)
    assert not s.test_from_train
    np.testing.assert_array_equal(s.test, np.arange(40))
    assert len(s.val) == 40 and len(s.train) == 160
    assert not set(s.train.tolist()) & set(s.val.tolist())


def test_subsample_sizes_and_seeding():
    train, test = labels_of([200] * 5), labels_of([40] * 5)
    kw = dict(val_fraction=0.1, max_train=50, max_val=20, max_test=25)
    a = make_splits(train, test, seed=0, **kw)
    b = make_splits(train, test, seed=1, **kw)
    assert (len(a.train), len(a.val), len(a.test)) == (50, 20, 25)
    assert np.bincount(train[a.train]).tolist() == [10] * 5
    assert np.bincount(test[a.test]).tolist() == [5] * 5
    np.testing.assert_array_equal(a.test, b.test)  # every cell scores the same test samples
    assert set(a.train.tolist()) != set(b.train.tolist())
    assert set(a.train.tolist()) <= set(make_splits(train, test, seed=0, val_fraction=0.1).train.tolist())


def test_val_does_not_depend_on_max_train():
    labels = labels_of([100] * 10)
    full = make_splits(labels, None, val_fraction=0.1, seed=5)
    capped = make_splits(labels, None, val_fraction=0.1, seed=5, max_train=30)
    np.testing.assert_array_equal(full.val, capped.val)


@pytest.mark.parametrize("limit", [1000, 10**6])
def test_cap_larger_than_split_keeps_it_whole(limit):
    labels = labels_of([30] * 3)
    s = make_splits(labels, None, val_fraction=0.1, seed=0, max_train=limit)
    assert len(s.train) + len(s.val) + len(s.test) == 90

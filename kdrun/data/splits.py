"""train / val / test index splits (DESIGN.md, "Splits").

test is the dataset's own test set, or a fixed stratified 20% of the data when it
has none (digits). val is `val_fraction` of the rest, stratified, drawn with the
cell's seed. max_* caps each split by a stratified subsample: seeded for train and
val, fixed for test, so every cell of a sweep is scored on the same test samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdrun.data.seeds import FIXED_SEED, numpy_rng

CARVED_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class SplitIndices:
    """Sorted indices into the source's arrays; test indexes the test arrays
    unless `test_from_train` (then it indexes the training arrays, like train/val)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_from_train: bool


def stratified_choice(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of `n` samples with class proportions kept.

    Largest-remainder allocation; when n >= number of classes every class gets
    at least one sample, so tiny subsamples still cover all labels.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    take = np.zeros(len(classes), dtype=np.int64)
    if n >= len(classes):
        take += 1
    rest, pool = n - int(take.sum()), counts - take
    quota = rest * pool / pool.sum()
    take += np.floor(quota).astype(np.int64)
    remainder = n - int(take.sum())
    by_fraction = np.argsort(-(quota - np.floor(quota)), kind="stable")
    take[by_fraction[:remainder]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def hold_out(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) positions; held_out is a stratified `fraction`, at least one sample."""
    n_out = min(max(1, round(fraction * len(labels))), len(labels) - 1)
    out = stratified_choice(labels, n_out, rng)
    kept = np.setdiff1d(np.arange(len(labels)), out, assume_unique=True)
    return kept, out


def _cap(idx: np.ndarray, labels: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= len(idx):
        return idx
    return idx[stratified_choice(labels[idx], limit, rng)]


def make_splits(train_labels: np.ndarray, test_labels: np.ndarray | None, *, val_fraction: float,
                seed: int, max_train: int | None = None, max_val: int | None = None,
                max_test: int | None = None) -> SplitIndices:
    """Index splits for a source with (or without: test_labels=None) its own test set."""
    train_labels = np.asarray(train_labels)
    test_from_train = test_labels is None
    if test_from_train:
        pool, test = hold_out(train_labels, CARVED_TEST_FRACTION, numpy_rng(FIXED_SEED, "carve_test"))
        test_labels = train_labels
    else:
        pool, test = np.arange(len(train_labels)), np.arange(len(test_labels))
    kept, out = hold_out(train_labels[pool], val_fraction, numpy_rng(seed, "val"))
    train, val = pool[kept], pool[out]
    return SplitIndices(
        train=_cap(train, train_labels, max_train, numpy_rng(seed, "max_train")),
        val=_cap(val, train_labels, max_val, numpy_rng(seed, "max_val")),
        test=_cap(test, np.asarray(test_labels), max_test, numpy_rng(FIXED_SEED, "max_test")),
        test_from_train=test_from_train,
    )

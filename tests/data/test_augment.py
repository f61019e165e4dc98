"""Batched augmentation: a crop is an exact translation with fill, a flip a mirror."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdrun.data.augment import BatchAugment, random_crop, random_hflip


def test_random_crop_is_a_translation_with_fill():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    gen = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, fill, gen)
    dy, dx = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(0))
    for i in range(2):
        padded = torch.stack([F.pad(x[i, c], (2, 2, 2, 2), value=float(fill[c])) for c in range(3)])
        assert torch.equal(out[i], padded[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 5])


def test_random_hflip_mirrors_some_samples_only():
    x = torch.randn(64, 1, 4, 4)
    out = random_hflip(x, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_augment_is_a_function_of_the_generator_seed():
    aug = BatchAugment(pad=4, hflip=True, fill=torch.zeros(3))
    x = torch.randn(16, 3, 32, 32)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape

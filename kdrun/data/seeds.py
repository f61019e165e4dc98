"""Named random streams derived from (seed, purpose, epoch).

Every random choice in kdrun.data draws from its own stream, never from the
global RNG: the val split, a subsample, or epoch 7's shuffle then depend only on
their inputs, so a resumed cell sees exactly the batches an uninterrupted one saw,
and the engine's own RNG state is left untouched.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

FIXED_SEED = 0  # for choices that must not depend on the cell's seed (test splits)


def derive_seed(seed: int, purpose: str, *more: int) -> int:
    """A 64-bit seed for one purpose (e.g. "val", "shuffle") and optional epoch/index."""
    words = [int(seed) % 2**64, zlib.crc32(purpose.encode())] + [int(m) % 2**64 for m in more]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def numpy_rng(seed: int, purpose: str, *more: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose, *more))


def torch_generator(seed: int, purpose: str, *more: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *more))

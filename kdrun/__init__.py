"""kdrun: a declarative, Hydra-driven runner for knowledge-distillation experiments."""

import os

# PyTorch's CPU allocator backs large tensors with transparent huge pages when asked. A
# language model's (batch, tokens, vocabulary) logits are ~100 MB per tensor; without it every
# step page-faults them in 4 KB at a time (measured here: an LM-KD step 1.2 s -> 0.45 s,
# a plain CE step 0.36 s -> 0.15 s). Read at the first large allocation, so set it early.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

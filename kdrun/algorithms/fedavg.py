"""FedAvg's two server steps: pick the round's clients, average their weights.

McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
Data" (AISTATS 2017): the server model is the average of the client models weighted
by their sample counts, w = sum_k (n_k / n) w_k.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from kdrun.data.seeds import torch_generator


def fedavg(states: Sequence[Mapping[str, Tensor]], sizes: Sequence[float]) -> dict[str, Tensor]:
    """Sample-weighted average of client state dicts.

    Written as w_0 + sum_k (n_k / n)(w_k - w_0), so identical clients average to exactly
    their own weights. Integer buffers (BatchNorm's num_batches_tracked) are counters,
    not weights: the first client's value is kept.
    """
    total = float(sum(sizes))
    first = states[0]
    averaged = {}
    for key, base in first.items():
        if not base.is_floating_point():
            averaged[key] = base.clone()
            continue
        delta = sum((n / total) * (state[key] - base) for state, n in zip(states[1:], sizes[1:]))
        averaged[key] = base + delta if len(states) > 1 else base.clone()
    return averaged


def select_clients(num_clients: int, per_round: int | None, seed: int, round_: int) -> list[int]:
    """The clients of round `round_` (1-based): all, or `per_round` of them drawn with
    (seed, round) from a torch stream of their own (resume sees the same draw)."""
    if per_round is None or per_round >= num_clients:
        return list(range(num_clients))
    order = torch.randperm(num_clients, generator=torch_generator(seed, "clients", round_))
    return sorted(order[:per_round].tolist())

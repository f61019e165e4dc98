"""Data-parallel training of one cell across processes started by torchrun (DDP).

    torchrun --standalone --nproc_per_node=2 -m kdrun trainer.epochs=5 ...

Each rank trains on its shard of every epoch's order (global batch =
data.batch_size x world size; `trainer.scale_lr` scales the learning rate
linearly with it, Goyal et al. 2017), gradients are averaged by DDP, training
metrics and evaluation counts are summed across ranks, and only rank 0 writes
files (checkpoints, metrics, result.json, W&B). Backend: nccl on GPUs, gloo on CPU.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_name: str) -> torch.device | None:
    """Join the process group torchrun set up; returns this rank's device (None when alone)."""
    if not launched_by_torchrun():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    return rank() == 0


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (identity when alone)."""
    if is_active():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if is_active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

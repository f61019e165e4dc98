"""Where a cell runs when a parallel launcher runs several at once on one machine.

Each worker process claims a free slot (a file lock in the sweep dir, held for
the process's life) and gets that slot's share of the CPU cores (affinity and
torch threads, so cells never fight over cores) and, with GPUs, one GPU.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

_claimed: dict[str, tuple[int, FileLock]] = {}  # sweep dir -> (slot, lock) of this process


def claim_slot(sweep_dir: Path, slots: int) -> int:
    """The lowest free slot in [0, slots); a process keeps the slot it claimed first."""
    key = str(sweep_dir)
    if key in _claimed:
        return _claimed[key][0]
    lock_dir = Path(sweep_dir) / ".slots"
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(slots):
            lock = FileLock(str(lock_dir / f"slot_{slot}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _claimed[key] = (slot, lock)
            return slot
        time.sleep(0.2)  # every slot is held: wait for a worker to end


def slot_cores(slot: int, slots: int, cores: list[int]) -> list[int]:
    """Disjoint, near-equal shares of `cores` (a slot gets >= 1 core, shared if slots > cores)."""
    if slots >= len(cores):
        return [cores[slot % len(cores)]]
    share = len(cores) // slots
    return cores[slot * share:(slot + 1) * share]


def place_cell(sweep_dir: Path, parallel: int, device: str) -> dict:
    """Pin this process to its slot's cores; returns the trainer settings to use."""
    slot = claim_slot(sweep_dir, parallel)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    mine = slot_cores(slot, parallel, cores)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))
    placement = {"slot": slot, "cores": mine, "threads": len(mine)}
    if device == "auto" and torch.cuda.is_available():
        placement["device"] = f"cuda:{slot % torch.cuda.device_count()}"
    log.info("parallel cell slot %d of %d: cores %s%s", slot, parallel, mine,
             f", {placement['device']}" if "device" in placement else "")
    return placement

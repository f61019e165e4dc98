"""Shared by the benchmarks: interleaved timing and the results file.

This machine is noisy, so arms are never timed one after the other: every round
runs each arm for a short chunk in a shuffled order, and a figure is the median
of the per-round ratios, with their spread (min, max, interquartile range).
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).parent / "results"


def interleave(arms: dict[str, Callable[[], None]], rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per chunk of each arm, `rounds` times, arms shuffled within each round."""
    order = list(arms)
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            arms[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    ratios = sorted(n / d for n, d in zip(numerator, denominator))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1],
            "q1": q[0], "q3": q[2], "rounds": len(ratios)}


def machine() -> dict[str, object]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    return path


class Chunks:
    """The next `steps` batches of `loader` on each iteration, epoch after epoch (a fresh
    iterator of the loader per epoch; `on_epoch(e)` runs before epoch e's first batch)."""

    def __init__(self, loader, steps: int, on_epoch=None):
        self.loader, self.steps, self.on_epoch = loader, steps, on_epoch
        self.epoch, self.batches = -1, iter(())

    def set_epoch(self, epoch: int) -> None:  # kdrun's train_epoch calls it; the chunk decides
        pass

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            batch = next(self.batches, None)
            if batch is None:
                self.epoch += 1
                if self.on_epoch is not None:
                    self.on_epoch(self.epoch)
                self.batches = iter(self.loader)
                batch = next(self.batches)
            self.last = batch
            yield batch


class ChunkData:
    """What train_epoch reads from a DataBundle: just the training chunks."""

    def __init__(self, train: Chunks):
        self.train = train

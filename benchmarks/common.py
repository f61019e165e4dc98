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

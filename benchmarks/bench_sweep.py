"""Benchmark 4: a 5 x 5 temperature x alpha sweep through kdrun / the same 25 cells run one
by one with the teacher recomputed in each (target >= 3x faster).

Both arms run kdrun's cell code in this process (no process start-up in either):
- kdrun: every cell shares one cache dir, so the teacher is trained once and its outputs are
  cached once (teacher.cache=auto; the batches are unaugmented, so the cache is exact);
- one by one: every cell gets an empty cache dir and teacher.cache=off, so each cell trains
  its own teacher and runs it live, as a script without kdrun's caches would.
The arms alternate in chunks of cells; the figure is total baseline time / total kdrun time,
with the per-chunk ratios as the spread.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from common import ratio_stats, write_result
from kdrun.plugins import load_plugins
from kdrun.engine.cell import run_cell

TEMPERATURES = (1, 2, 4, 8, 16)
ALPHAS = (0.1, 0.25, 0.5, 0.75, 0.9)


def cell_config(overrides: list[str]):
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunk", type=int, default=5, help="cells per chunk")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--base", nargs="*", default=[
        "teacher=resnet20", "student=resnet8", "data.max_train=600", "data.max_val=100",
        "data.max_test=300", "data.augment=false", "trainer.epochs=2", "teacher.train.epochs=4",
        "logger=none", "trainer.progress=false"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_plugins()
    grid = [[f"loss.kd.temperature={t}", f"loss.kd.alpha={a}"]
            for t, a in itertools.product(TEMPERATURES, ALPHAS)]
    times = {"kdrun": [], "one_by_one": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shared = [f"paths.output_dir={tmp}/kdrun", f"paths.cache_dir={tmp}/kdrun/cache"]

        def kdrun_cell(i, cell):
            cfg = cell_config([*args.base, *cell, *shared, "teacher.cache=auto"])
            return run_cell(cfg, tmp / "kdrun" / f"cell{i}", cell)

        def lone_cell(i, cell):
            own = [f"paths.output_dir={tmp}/lone{i}", f"paths.cache_dir={tmp}/lone{i}/cache"]
            cfg = cell_config([*args.base, *cell, *own, "teacher.cache=off"])
            return run_cell(cfg, tmp / f"lone{i}" / "cell", cell)

        results = {"kdrun": [], "one_by_one": []}
        for start in range(0, len(grid), args.chunk):
            chunk = list(enumerate(grid))[start:start + args.chunk]
            for arm, run in (("kdrun", kdrun_cell), ("one_by_one", lone_cell)):
                t0 = time.perf_counter()
                results[arm] += [run(i, cell) for i, cell in chunk]
                times[arm].append(time.perf_counter() - t0)
    total = {arm: sum(t) for arm, t in times.items()}
    speedup = total["one_by_one"] / total["kdrun"]
    sources = [r["teacher_source"] for r in results["kdrun"]]
    payload = {"cells": len(grid), "base_overrides": args.base, "chunk_seconds": times,
               "total_seconds": total, "speedup": speedup, "target": 3.0,
               "per_chunk": ratio_stats(times["one_by_one"], times["kdrun"]),
               "kdrun_teacher_sources": {s: sources.count(s) for s in set(sources)},
               "kdrun_cached_outputs": sum(bool(r.get("teacher_cache")) for r in results["kdrun"])}
    path = write_result("sweep", payload)
    print(f"sweep_speedup: {speedup:.2f}x (target >= 3) over {len(grid)} cells; "
          f"per-chunk {payload['per_chunk']['min']:.2f}-{payload['per_chunk']['max']:.2f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()

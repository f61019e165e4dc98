"""End-of-sweep summary: how many cells completed now, were skipped, failed or never finished.

A Hydra callback (configured in conf/config.yaml) that reads the cells'
result.json files, so it counts correctly whichever launcher ran the cells.
Cells whose result.json predates this multirun and is completed were skipped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdrun.tracking.result import RESULT_FILE, read_result, write_json_atomic

log = logging.getLogger("kdrun")


def summarize_sweep(sweep_dir: Path, started: float | None = None) -> dict[str, Any]:
    counts = {"completed": 0, "skipped": 0, "failed": 0, "unfinished": 0}
    failed = []
    for path in sorted(Path(sweep_dir).rglob(RESULT_FILE)):
        result = read_result(path.parent) or {}
        status = result.get("status")
        if status == "completed":
            fresh = started is None or path.stat().st_mtime >= started
            counts["completed" if fresh else "skipped"] += 1
        elif status == "failed":
            counts["failed"] += 1
            failed.append({"cell": path.parent.name, "error": result.get("error")})
        else:
            counts["unfinished"] += 1
    return {**counts, "cells": sum(counts.values()), "failed_cells": failed}


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize_sweep(sweep_dir, self.started)
        write_json_atomic(sweep_dir / "summary.json", summary)
        log.info("sweep %s: %d cells: %d completed, %d skipped (completed earlier), %d failed, "
                 "%d unfinished", sweep_dir, summary["cells"], summary["completed"],
                 summary["skipped"], summary["failed"], summary["unfinished"])
        for cell in summary["failed_cells"]:
            log.info("  failed: %s: %s", cell["cell"], cell["error"])

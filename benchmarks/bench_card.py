"""Benchmark 6: the README's card command, typed as is, from a cold start (target <= 120 s on
the idle 2 cores, teacher included; teacher >= 95 % test top-1; student clearly above chance).

    kdrun teacher=resnet50 student=mobilenet loss=at

It runs as a subprocess (`.venv/bin/kdrun`, as a user types it) in an empty temp dir, so the
outputs and the teacher cache start empty; W&B is offline and all its dirs are inside the temp
dir. The wall time is split into parts read back from what the run wrote:
- teacher_train_s: the teacher cache entry's metrics.jsonl epoch_s summed (train + val/test
  scoring per epoch);
- student_train_s: the cell's metrics.jsonl epoch_s summed (the same, for the student);
- to_first_log_s: process start to the first log line (Python, torch, Hydra imports);
- other_s: the rest (data, model builds, the teacher's outputs, W&B, checkpoints, exit).
`nproc` and /proc/loadavg are recorded at the start and the end: one cold run is one timing,
so a loaded machine inflates it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import write_result

COMMAND = ["teacher=resnet50", "student=mobilenet", "loss=at"]
KDRUN = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kdrun"
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def epochs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def first_log_time(text: str) -> float | None:
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kdrun", default=str(KDRUN), help="the kdrun executable")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()
    before = {"nproc": os.cpu_count(), "loadavg": loadavg()}
    with tempfile.TemporaryDirectory(prefix="kdrun-card-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp / "wandb"),
               "WANDB_CACHE_DIR": str(tmp / "wandb-cache"), "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
               "WANDB_DATA_DIR": str(tmp / "wandb-data"), "WANDB_ARTIFACT_DIR": str(tmp / "wandb-artifacts"),
               "WANDB_SILENT": "true"}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        start_epoch = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run([str(Path(args.kdrun).resolve()), *COMMAND], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=args.timeout)
        wall = time.perf_counter() - t0
        after = loadavg()
        if proc.returncode != 0:
            raise SystemExit(f"kdrun {' '.join(COMMAND)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        results = sorted((tmp / "outputs" / "runs").rglob("result.json"))
        teachers = sorted((tmp / "outputs" / "cache" / "teachers").glob("*/metrics.jsonl"))
        if len(results) != 1 or len(teachers) != 1:
            raise SystemExit(f"expected one cell and one teacher under {tmp}/outputs after {wall:.1f} s: "
                             f"{results} {teachers}")
        result = json.loads(results[0].read_text())
        student_epochs = epochs(results[0].parent / "metrics.jsonl")
        teacher_epochs = epochs(teachers[0])
        first_log = first_log_time(proc.stdout + "\n" + proc.stderr)
    teacher_s = sum(r["epoch_s"] for r in teacher_epochs)
    student_s = sum(r["epoch_s"] for r in student_epochs)
    to_first_log = first_log - start_epoch if first_log is not None else None
    parts = {"teacher_train_s": teacher_s, "student_train_s": student_s,
             "to_first_log_s": to_first_log,
             "other_s": wall - teacher_s - student_s - (to_first_log or 0.0)}
    payload = {"command": "kdrun " + " ".join(COMMAND), "wall_s": wall, "parts": parts,
               "teacher_epoch_s": [r["epoch_s"] for r in teacher_epochs],
               "student_epoch_s": [r["epoch_s"] for r in student_epochs],
               "teacher_top1": result["teacher_top1"], "student_top1": result["student_top1"],
               "best_student_top1": result["best_student_top1"], "cell_elapsed_s": result.get("elapsed_s"),
               "target": {"wall_s": 120.0, "teacher_top1": 95.0},
               "nproc": before["nproc"], "loadavg_start": before["loadavg"], "loadavg_end": after}
    path = write_result("card", payload)
    print(f"card: {wall:.1f} s (target <= 120) = teacher {teacher_s:.1f} s + student {student_s:.1f} s "
          f"+ start-up {to_first_log or float('nan'):.1f} s + other {parts['other_s']:.1f} s; "
          f"teacher {result['teacher_top1']:.2f}%, student best {result['best_student_top1']:.2f}% "
          f"(nproc {before['nproc']}, load {before['loadavg'][0]:.2f} -> {after[0]:.2f})")
    print(f"-> {path}")


if __name__ == "__main__":
    main()

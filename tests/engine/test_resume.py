"""kill -9 in the middle of a run, rerun: the result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from helpers import TINY, run_kdrun

ARGS = [*TINY, "trainer.epochs=6", "data.max_train=300", "loss=[at,kd]"]


def metric_lines(cell):
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "epoch_s"} for line in lines]


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    common = [*ARGS, f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    straight = tmp_path / "straight"
    run_kdrun([*common, f"hydra.run.dir={straight}"], cwd=tmp_path, check=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "kdrun", *common, f"hydra.run.dir={killed}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    metrics = killed / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:  # kill once an epoch is checkpointed
        if (killed / "checkpoints" / "last.pt").is_file() and metrics.is_file():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = json.loads((killed / "result.json").read_text())
    assert interrupted["status"] == "running"

    run_kdrun([*common, f"hydra.run.dir={killed}"], cwd=tmp_path, check=True)
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1
    for key in ("student_top1", "best_student_top1", "val_top1", "teacher_top1", "epochs_done"):
        assert a[key] == b[key], key
    assert metric_lines(straight) == metric_lines(killed)

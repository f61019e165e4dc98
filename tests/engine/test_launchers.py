"""Sweeps through the launcher presets: local parallel (joblib) and submitit's local executor;
a sweep killed with -9 and rerun trains no cell twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from helpers import TINY, run_kdrun

from kdrun.engine.placement import slot_cores


def results(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


def test_slot_cores_are_disjoint():
    cores = list(range(8))
    shares = [slot_cores(s, 4, cores) for s in range(4)]
    assert shares == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [slot_cores(s, 3, [0, 1]) for s in range(3)] == [[0], [1], [0]]


def test_local_parallel_cells_get_disjoint_cores(tmp_path):
    sweep = tmp_path / "sweep"
    run_kdrun(["-m", *TINY, "trainer.epochs=1", "loss=ce", "seed=0,1", "hydra/launcher=local",
               "hydra.launcher.n_jobs=2", f"paths.output_dir={tmp_path}",
               f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=True)
    cells = results(sweep)
    assert len(cells) == 2 and all(c["status"] == "completed" for c in cells.values())
    placements = [c["placement"] for c in cells.values()]
    assert all(p["threads"] == len(p["cores"]) for p in placements)
    if len(os.sched_getaffinity(0)) >= 2 and {p["slot"] for p in placements} == {0, 1}:
        assert not set(placements[0]["cores"]) & set(placements[1]["cores"])
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["completed"] == 2 and summary["failed"] == 0


def test_submitit_local_launcher_runs_cells(tmp_path):
    sweep = tmp_path / "sweep"
    run_kdrun(["-m", *TINY, "trainer.epochs=1", "loss=ce", "seed=0,1",
               "hydra/launcher=submitit_local_test", f"paths.output_dir={tmp_path}",
               f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=True, timeout=900)
    cells = results(sweep)
    assert len(cells) == 2 and all(c["status"] == "completed" for c in cells.values())


def test_sweep_killed_and_rerun_trains_no_cell_twice(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=4", "data.max_train=300", "seed=0,1,2",
            f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "kdrun", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill once cell 1 is done, cell 2 started
        done = [c for c in results(sweep).values() if c["status"] == "completed"]
        second = [p for p in sweep.glob("*/checkpoints/last.pt")  # a running cell saved an epoch
                  if json.loads((p.parents[1] / "result.json").read_text())["status"] == "running"]
        if done and second:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = results(sweep)
    finished = {name for name, c in before.items() if c["status"] == "completed"}
    stamps = {name: (sweep / name / "result.json").stat().st_mtime_ns for name in finished}

    run_kdrun(args, cwd=tmp_path, check=True)
    after = results(sweep)
    assert len(after) == 3 and all(c["status"] == "completed" for c in after.values())
    for name in finished:  # completed cells were skipped, not retrained
        assert (sweep / name / "result.json").stat().st_mtime_ns == stamps[name]
    interrupted = [c for name, c in after.items() if name in before and name not in finished]
    assert interrupted and all(c["resumed_from"] >= 1 for c in interrupted)
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["skipped"] == len(finished) and summary["completed"] == 3 - len(finished)


def test_optuna_search_maximises_val_top1(tmp_path):
    sweep = tmp_path / "sweep"
    run_kdrun(["-m", *TINY, "trainer.epochs=1", "hparams_search=kd", "hydra.sweeper.n_trials=2",
               f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=True)
    cells = results(sweep)
    assert len(cells) == 2 and all(c["status"] == "completed" for c in cells.values())
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best
    assert float(best.split("best_value:")[1].split()[0]) == max(c["val_top1"] for c in cells.values())

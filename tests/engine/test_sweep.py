"""A 2x2 multirun through the CLI: 4 completed cells, the teacher trained once, reruns skip."""

from __future__ import annotations

import json

from helpers import TINY, run_kdrun


def results(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


def test_two_by_two_sweep_trains_the_teacher_once(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "loss=kd", "loss.kd.temperature=1,4", "loss.kd.alpha=0.5,0.9",
            f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    run_kdrun(args, cwd=tmp_path, check=True)
    cells = results(sweep)
    assert len(cells) == 4
    for a in ("0.5", "0.9"):
        for t in ("1", "4"):  # cell dirs are named from their overrides, sorted
            assert any(f"loss.kd.alpha={a},loss.kd.temperature={t},loss=kd," in name
                       for name in cells)
    assert all(c["status"] == "completed" for c in cells.values())
    sources = sorted(c["teacher_source"] for c in cells.values())
    assert sources == ["cache", "cache", "cache", "trained"]
    assert len({c["teacher_key"] for c in cells.values()}) == 1
    assert len(list((tmp_path / "cache" / "teachers").glob("*/teacher.pt"))) == 1
    for name in cells:
        assert (sweep / name / ".hydra" / "overrides.yaml").is_file()
        assert (sweep / name / "checkpoints" / "last.pt").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/result.json")}
    rerun = run_kdrun(args, cwd=tmp_path, check=True)
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/result.json")} == stamps
    assert "4 cells: 0 completed, 4 skipped (completed earlier), 0 failed" in rerun.stdout
    summary = json.loads((sweep / "summary.json").read_text())
    assert (summary["skipped"], summary["completed"], summary["failed"]) == (4, 0, 0)


def test_a_failing_cell_does_not_take_the_sweep_down(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.epochs=1", "loss.kd.alpha=0.5,1.5",
            f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    run_kdrun(args, cwd=tmp_path, check=True)
    cells = {("1.5" if "loss.kd.alpha=1.5" in name else "0.5"): c for name, c in results(sweep).items()}
    assert cells["0.5"]["status"] == "completed"
    failed = cells["1.5"]
    assert failed["status"] == "failed" and "loss.kd.alpha=1.5" in failed["error"]


def test_default_output_dirs_sit_in_the_launch_directory(tmp_path):
    """No paths or sweep dir given, as a user types it: outputs/ in the directory kdrun
    was started from, for a sweep (its dir is read before Hydra's runtime exists) and a run."""
    args = [*TINY, "loss=ce", "trainer.epochs=1"]
    run_kdrun(["-m", *args, "seed=0,1"], cwd=tmp_path, check=True)
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    assert sorted(c["seed"] for c in results(sweep).values()) == [0, 1]
    run_kdrun(args, cwd=tmp_path, check=True)
    assert len(list((tmp_path / "outputs" / "runs").glob("*/*/result.json"))) == 1

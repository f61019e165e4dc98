"""kdrun-table as a user runs it: a subprocess on fake sweeps, and on a real tiny `kdrun -m`."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
from helpers import TINY, run_kdrun


def kdrun_table(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdrun.report.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "kdrun-table"
    assert script.is_file() or shutil.which("kdrun-table")


def test_cli_writes_tables_and_plots_and_prints_a_summary(tmp_path, cell, epochs):
    sweep = tmp_path / "sweep"
    for t in ("1", "4"):
        for a in ("0.5", "0.9"):
            for seed in (0, 1):
                value = 60 + float(t) + 10 * float(a) + seed
                cell(sweep, [f"loss.kd.temperature={t}", f"loss.kd.alpha={a}", f"seed={seed}"],
                     value, epochs=epochs([value - 2, value]))
    cell(sweep, ["loss.kd.temperature=8", "loss.kd.alpha=0.5", "seed=0"], status="failed")
    proc = kdrun_table(sweep, "--rows", "loss.kd.temperature", "--cols", "loss.kd.alpha",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| loss.kd.temperature | loss.kd.alpha=0.5 | loss.kd.alpha=0.9 |" in out
    assert "| 1 | 66.50 ± 0.71 | 70.50 ± 0.71 |" in out
    assert "| 8 | failed | — |" in out
    assert "cells: 8 completed, 1 failed, 0 running, 0 missing" in out
    for name in ("table.md", "table.csv", "table.tex", "heatmap.png", "curves.png"):
        assert f"wrote {sweep / name}" in out
    assert (sweep / "table.md").read_text() in out
    assert matplotlib.image.imread(sweep / "heatmap.png").ndim == 3

    latex = kdrun_table(sweep, "--rows", "loss.kd.temperature", "--cols", "loss.kd.alpha",
                        "--format", "latex", "--out", tmp_path / "report", "--no-plots",
                        cwd=tmp_path)
    assert latex.returncode == 0 and r"\begin{tabular}" in latex.stdout
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "table.csv", "table.md", "table.tex"]


def test_cli_reads_a_recipe_dir(tmp_path, cell):
    recipe = tmp_path / "recipes" / "demo"
    recipe.mkdir(parents=True)
    (recipe / "reference.csv").write_text("teacher,student,method,top1\nresnet32,resnet8,kd,70.0\n"
                                          "resnet56,resnet20,kd,71.0\n")
    (recipe / "name_map.yaml").write_text("models: {resnet56: resnet56}\n")
    cell(tmp_path / "sweep", ["seed=0"], 71.5)
    proc = kdrun_table(tmp_path / "sweep", "--recipe", recipe, "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "teacher,student,kd,ref,Δ"
    assert lines[1:3] == ["resnet32,resnet8,71.50,70.00,+1.50", "resnet56,resnet20,—,71.00,—"]


def test_cli_errors_name_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = kdrun_table(tmp_path / "empty", cwd=tmp_path)
    assert proc.returncode == 2 and "no result.json under" in proc.stderr
    proc = kdrun_table(tmp_path / "empty", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2 and "--out is needed" in proc.stderr


def test_a_real_tiny_sweep(tmp_path):
    """Two seeds through `kdrun -m`; one cell is then deleted: kdrun-table reports it missing."""
    sweep = tmp_path / "sweep"
    # one thread: a tiny job gains nothing from more, and loses a lot on a busy machine
    run_kdrun(["-m", *TINY, "trainer.epochs=1", "trainer.threads=1", "seed=0,1",
               f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=True)
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert [r["status"] for r in results] == ["completed", "completed"]
    values = [r["best_student_top1"] for r in results]
    proc = kdrun_table(sweep, "--out", tmp_path / "report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    assert f"| resnet8 | resnet8 | {expected} |" in proc.stdout
    assert "cells: 2 completed, 0 failed, 0 running, 0 missing" in proc.stdout
    assert (tmp_path / "report" / "curves.png").is_file()

    shutil.rmtree(next(p.parent for p in sweep.glob("*seed=1*/result.json")))
    proc = kdrun_table(sweep, "--out", tmp_path / "report", "--no-plots", cwd=tmp_path)
    assert f"| resnet8 | resnet8 | {values[0]:.2f} (n=1 of 2: 1 missing)* |" in proc.stdout
    assert "cells: 1 completed, 0 failed, 0 running, 1 missing" in proc.stdout

"""Grouping over seeds, words for cells without a result, and the three output formats."""

from __future__ import annotations

import csv
import io
import math

import pytest

from kdrun.report.collect import collect_cells
from kdrun.report.render import grid, render
from kdrun.report.table import build_table, check_metric


def t_alpha_sweep(sweep, cell):
    """T in {1, 4} x alpha in {0.5, 0.9}, seeds 0-2; some cells failed, ran or never wrote."""
    values = {("1", "0.5"): [70.0, 71.0, 72.0], ("4", "0.5"): [80.0, 81.5, 79.0],
              ("1", "0.9"): [60.0, 62.0, "failed"], ("4", "0.9"): ["failed", "failed", "running"]}
    for (t, a), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            overrides = [f"loss.kd.temperature={t}", f"loss.kd.alpha={a}", f"seed={seed}"]
            if isinstance(value, str):
                cell(sweep, overrides, status=value)
            else:
                cell(sweep, overrides, value)
    return collect_cells([sweep])


def table_of(cells, rows, cols, metric="best_student_top1"):
    header, body = grid(build_table(cells, rows, cols, metric))
    return {tuple(line[:len(rows) or 1]): dict(zip(header, line)) for line in body}


def test_mean_and_std_over_seeds_by_hand(tmp_path, cell):
    cells = t_alpha_sweep(tmp_path, cell)
    table = build_table(cells, ["loss.kd.alpha"], ["loss.kd.temperature"], "best_student_top1")
    agg = table.cells[("0.5",), ("4",)]
    mean = (80.0 + 81.5 + 79.0) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in (80.0, 81.5, 79.0)) / 2)  # n - 1
    assert agg.mean == pytest.approx(mean) and agg.std == pytest.approx(std)
    text = table_of(cells, ["loss.kd.alpha"], ["loss.kd.temperature"])
    assert text["0.5",]["loss.kd.temperature=4"] == f"{mean:.2f} ± {std:.2f} (n=3)"
    assert text["0.5",]["loss.kd.temperature=1"] == "71.00 ± 1.00 (n=3)"  # n differs: shown


def test_failed_running_and_partial_groups_are_never_plain_numbers(tmp_path, cell):
    text = table_of(t_alpha_sweep(tmp_path, cell), ["loss.kd.alpha"], ["loss.kd.temperature"])
    assert text["0.9",]["loss.kd.temperature=4"] == "failed (2), running (1)"
    # two seeds completed, one failed: the completed mean, a marker and the counts
    assert text["0.9",]["loss.kd.temperature=1"] == "61.00 ± 1.41 (n=2 of 3: 1 failed)*"


def test_single_status_groups_and_absent_combinations(tmp_path, cell):
    cell(tmp_path, ["loss=kd", "seed=0"], 70.0)
    cell(tmp_path, ["loss=at", "seed=0"], status="failed", loss=["at"])
    cell(tmp_path, ["loss=at", "seed=1"], status="failed", loss=["at"])
    cell(tmp_path, ["loss=sp", "seed=0"], status="running", loss=["sp"], student="resnet20")
    text = table_of(collect_cells([tmp_path]), ["student"], ["loss"])
    assert text["resnet8",] == {"student": "resnet8", "at": "failed", "kd": "70.00", "sp": "—"}
    assert text["resnet20",] == {"student": "resnet20", "at": "—", "kd": "—", "sp": "running"}


def test_keys_the_layout_does_not_show_are_added_to_the_rows(tmp_path, cell, caplog):
    cells = t_alpha_sweep(tmp_path, cell)
    table = build_table(cells, ["teacher"], ["loss"], "best_student_top1")
    assert table.row_keys == ["teacher", "loss.kd.alpha", "loss.kd.temperature"]
    assert len(table.rows) == 4  # never one average over four configs
    assert "loss.kd.alpha, loss.kd.temperature" in caplog.text


def test_unknown_keys_and_non_numeric_metrics_fail_with_the_choices(tmp_path, cell):
    cells = t_alpha_sweep(tmp_path, cell)
    with pytest.raises(ValueError, match=r"'loss.kd.temp'.*loss.kd.temperature"):
        build_table(cells, ["loss.kd.temp"], [], "best_student_top1")
    with pytest.raises(ValueError, match="--metric teacher_source.*val_top1"):
        check_metric(cells, "teacher_source")
    check_metric(cells, "wall_s")  # any numeric result key works


def test_markdown_csv_and_latex(tmp_path, cell):
    cells = t_alpha_sweep(tmp_path, cell)
    table = build_table(cells, ["loss.kd.alpha"], ["loss.kd.temperature"], "val_top1")
    md = render(table, "markdown")
    lines = md.splitlines()
    assert lines[0] == "| loss.kd.alpha | loss.kd.temperature=1 | loss.kd.temperature=4 |"
    assert lines[1] == "|---|---:|---:|"
    assert "| 0.9 | 61.00 ± 1.41 (n=2 of 3: 1 failed)* | failed (2), running (1) |" in lines
    assert "val_top1: mean ± std over n seeds" in md and "* some seeds did not complete" in md

    rows = list(csv.reader(io.StringIO(render(table, "csv"))))
    assert rows[0] == ["loss.kd.alpha", "loss.kd.temperature=1", "loss.kd.temperature=4"]
    assert rows[1] == ["0.5", "71.00 ± 1.00 (n=3)", "80.17 ± 1.26 (n=3)"]
    assert len(rows) == 3

    tex = render(table, "latex")
    assert r"\begin{tabular}{lrr}" in tex and r"\bottomrule" in tex
    assert r"loss.kd.alpha & loss.kd.temperature=1 & loss.kd.temperature=4 \\" in tex
    assert r"0.5 & 71.00 $\pm$ 1.00 (n=3) & 80.17 $\pm$ 1.26 (n=3) \\" in tex
    assert r"failed (2), running (1) \\" in tex


def test_one_seed_per_cell_has_no_std(tmp_path, cell):
    cell(tmp_path, ["seed=0"], 70.125)
    table = build_table(collect_cells([tmp_path]), ["teacher", "student"], ["loss"],
                        "best_student_top1")
    md = render(table, "markdown", precision=1)
    assert "| resnet32 | resnet8 | 70.1 |" in md and "one seed per cell (no std)" in md

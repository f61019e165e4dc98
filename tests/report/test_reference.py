"""Published numbers: ref and Δ columns, name maps, reference-only rows and columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdrun.report.collect import collect_cells
from kdrun.report.reference import attach_reference, load_name_map, load_reference
from kdrun.report.render import grid, render
from kdrun.report.table import build_table

REFERENCE = """\
teacher,student,method,top1
vgg13,vgg8,kd,72.98
vgg13,vgg8,kd+dot,73.77
resnet50,mobilenetv2,kd,67.35
resnet56,resnet20,kd,70.66
"""
SHARED = Path("/work/shared/reference/cifar100_mdistiller.csv")


def sweep_with_two_pairs(sweep, cell):
    for seed, value in enumerate([72.5, 73.1]):
        cell(sweep, ["teacher=vgg13_cifar", "student=vgg8", f"seed={seed}"], value,
             teacher="vgg13_cifar", student="vgg8")
    cell(sweep, ["teacher=resnet50_cifar", "student=mobilenetv2", "seed=0"], status="failed",
         teacher="resnet50_cifar", student="mobilenetv2")
    cell(sweep, ["teacher=resnet50_cifar", "student=mobilenetv2", "seed=1"], 66.0,
         teacher="resnet50_cifar", student="mobilenetv2")
    return collect_cells([sweep])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "reference.csv").write_text(REFERENCE)
    (tmp_path / "name_map.yaml").write_text(
        "models: {vgg13: vgg13_cifar, resnet50: resnet50_cifar}\nmethods: {kd+dot: null}\n")
    (tmp_path / "name_map.csv").write_text(
        "published,kdrun,field\nvgg13,vgg13_cifar,model\nresnet50,resnet50_cifar,model\nkd+dot,,method\n")
    return tmp_path


def rows_of(table):
    header, body = grid(table)
    return {tuple(line[:2]): dict(zip(header, line)) for line in body}


@pytest.mark.parametrize("name_map", ["name_map.yaml", "name_map.csv"])
def test_ref_and_delta_columns_with_a_name_map(tmp_path, files, cell, name_map):
    cells = sweep_with_two_pairs(tmp_path / "sweep", cell)
    table = build_table(cells, ["teacher", "student"], ["loss"], "best_student_top1")
    attach_reference(table, load_reference(files / "reference.csv", load_name_map(files / name_map)))
    rows = rows_of(table)
    vgg = rows["vgg13_cifar", "vgg8"]
    assert vgg["kd"] == "72.80 ± 0.42 (n=2)" and vgg["kd ref"] == "72.98"
    assert vgg["kd Δ"] == "-0.18"  # ours - ref, from the unrounded mean
    # one seed failed: the completed mean keeps its marker, and its Δ is still ours - ref
    mobile = rows["resnet50_cifar", "mobilenetv2"]
    assert mobile["kd"].endswith("(n=1 of 2: 1 failed)*") and mobile["kd Δ"] == "-1.35"
    # kd+dot is mapped to null: a reference-only column, "—" for ours
    assert (vgg["kd+dot"], vgg["kd+dot ref"], vgg["kd+dot Δ"]) == ("—", "73.77", "—")
    # a published pair kdrun has no cell for stays as a reference-only row
    assert rows["resnet56", "resnet20"] == {
        "teacher": "resnet56", "student": "resnet20", "kd": "—", "kd ref": "70.66", "kd Δ": "—",
        "kd+dot": "—", "kd+dot ref": "—", "kd+dot Δ": "—"}
    assert "Δ = ours - ref" in render(table, "markdown")


def test_without_a_name_map_published_names_do_not_match(tmp_path, files, cell):
    table = build_table(sweep_with_two_pairs(tmp_path / "sweep", cell), ["teacher", "student"],
                        ["loss"], "best_student_top1")
    attach_reference(table, load_reference(files / "reference.csv"))
    rows = rows_of(table)
    assert rows["vgg13_cifar", "vgg8"]["kd ref"] == "—"
    assert rows["vgg13", "vgg8"]["kd ref"] == "72.98"


def test_loss_in_the_rows_gives_one_ref_and_one_delta_column(tmp_path, files, cell):
    cells = sweep_with_two_pairs(tmp_path / "sweep", cell)
    table = build_table(cells, ["teacher", "student", "loss"], [], "best_student_top1")
    attach_reference(table, load_reference(files / "reference.csv",
                                           load_name_map(files / "name_map.yaml")))
    header, body = grid(table)
    assert header == ["teacher", "student", "loss", "best_student_top1", "ref", "Δ"]
    assert ["vgg13_cifar", "vgg8", "kd", "72.80 ± 0.42 (n=2)", "72.98", "-0.18"] == body[1]
    assert ["vgg13_cifar", "vgg8", "kd+dot", "—", "73.77", "—"] in body


def test_the_shared_reference_files_load():
    rows = load_reference(SHARED, {"model": {"vgg13": "vgg13_cifar"}})
    assert ("vgg13_cifar", "vgg8", "dkd", 74.68) in [(r.teacher, r.student, r.method, r.top1)
                                                      for r in rows]


def test_one_method_for_the_whole_sweep_needs_no_loss_column(tmp_path, files, cell):
    table = build_table(sweep_with_two_pairs(tmp_path / "sweep", cell), ["teacher", "student"],
                        [], "best_student_top1")
    attach_reference(table, load_reference(files / "reference.csv",
                                           load_name_map(files / "name_map.yaml")))
    rows = rows_of(table)
    assert rows["vgg13_cifar", "vgg8"]["ref"] == "72.98" and rows["resnet56", "resnet20"]["ref"] == "70.66"
    assert len(rows) == 3  # kd+dot is another method: not in a kd-only table


def test_a_layout_without_the_method_warns_and_adds_no_ref(tmp_path, files, cell, caplog):
    table = build_table(sweep_with_two_pairs(tmp_path / "sweep", cell), ["teacher"], ["student"],
                        "best_student_top1")
    table.constants.pop("loss")
    attach_reference(table, load_reference(files / "reference.csv"))
    assert table.ref is None and "put teacher, student and loss in --rows or --cols" in caplog.text

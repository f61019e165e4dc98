"""Heatmaps and per-epoch curves are written as valid PNG files."""

from __future__ import annotations

import matplotlib.image
import pytest

from kdrun.report.collect import collect_cells
from kdrun.report.plots import heatmap_axes, plot_curves, plot_heatmaps


def grid_sweep(sweep, cell, epochs, losses=("kd",)):
    for loss in losses:
        for t in ("1", "4", "8"):
            for a in ("0.1", "0.9"):
                for seed in (0, 1):
                    overrides = [f"loss={loss}", f"loss.kd.temperature={t}", f"loss.kd.alpha={a}",
                                 f"seed={seed}"]
                    if (t, a) == ("8", "0.9"):
                        cell(sweep, overrides, status="failed")
                        continue
                    value = 50 + float(t) + 10 * float(a) + seed
                    cell(sweep, overrides, value, epochs=epochs([value - 4, value - 1, value]))
    return collect_cells([sweep])


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_temperature_alpha_heatmap_and_curves(tmp_path, cell, epochs):
    cells = grid_sweep(tmp_path / "sweep", cell, epochs)
    axes = heatmap_axes(cells, None)
    assert axes == ("loss.kd.temperature", "loss.kd.alpha")  # found without being asked
    out = tmp_path / "out"
    out.mkdir()
    written = plot_heatmaps(cells, "best_student_top1", axes, out)
    assert written == [out / "heatmap.png"]
    assert_png(written[0])
    curves = plot_curves(cells, out)
    assert curves == out / "curves.png"
    assert_png(curves)


def test_one_heatmap_per_value_of_the_other_keys(tmp_path, cell, epochs):
    cells = grid_sweep(tmp_path / "sweep", cell, epochs, losses=("kd", "at+kd"))
    written = plot_heatmaps(cells, "val_top1", ("loss.kd.alpha", "loss.kd.temperature"), tmp_path)
    assert sorted(p.name for p in written) == ["heatmap_0_loss=at+kd.png", "heatmap_1_loss=kd.png"]
    for path in written:
        assert_png(path)


def test_no_heatmap_unless_both_keys_vary_and_named_keys_must_exist(tmp_path, cell):
    cell(tmp_path, ["loss.kd.temperature=4", "seed=0"], 70.0)
    cell(tmp_path, ["loss.kd.temperature=4", "seed=1"], 71.0)
    cells = collect_cells([tmp_path])
    assert heatmap_axes(cells, None) is None
    with pytest.raises(ValueError, match="'loss.kd.beta'"):
        heatmap_axes(cells, ("loss.kd.temperature", "loss.kd.beta"))


def test_no_curves_without_metrics_files(tmp_path, cell):
    cell(tmp_path / "sweep", ["seed=0"], 70.0)
    assert plot_curves(collect_cells([tmp_path / "sweep"]), tmp_path) is None

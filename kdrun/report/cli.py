"""The `kdrun-table` command: sweep dir(s) -> table (stdout + table.md/.csv/.tex) and PNG plots.

    kdrun-table outputs/multiruns/2026-11-25_13-12-57
    kdrun-table <sweep> --rows teacher,student --cols loss --metric best_student_top1
    kdrun-table <sweep> --rows loss.kd.temperature --cols loss.kd.alpha --format latex
    kdrun-table <sweep> --recipe recipes/<name>      # ref + Δ columns from its reference.csv
    kdrun-table <sweep_a> <sweep_b> --out report/    # several sweeps, one table

The table goes to stdout in the chosen format, and all three formats go to --out
so a recipe can check in whichever it needs. Warnings go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from kdrun.report.collect import IDENTITY_KEYS, STATUSES, collect_cells
from kdrun.report.render import FORMATS, render
from kdrun.report.table import build_table, check_metric

log = logging.getLogger("kdrun.report")


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="kdrun-table", description="Aggregate the cells of kdrun sweeps into a table "
        "(mean ± std over seeds) and plots.", epilog=f"keys: identity keys ({', '.join(IDENTITY_KEYS)}) "
        "or any override key, e.g. loss.kd.temperature")
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR",
                   help="sweep dir(s) (hydra.sweep.dir); cells are found recursively")
    p.add_argument("--rows", type=_keys, default=["teacher", "student"],
                   help="comma-separated keys for the rows (default: teacher,student)")
    p.add_argument("--cols", type=_keys, default=["loss"],
                   help="comma-separated keys for the columns (default: loss; '' for one column)")
    p.add_argument("--metric", default=None,
                   help="numeric result.json key (default: the task's best-validation test score: "
                        "best_student_top1, or best_student_ppl for task=lm)")
    p.add_argument("--format", choices=list(FORMATS), default="markdown",
                   help="what stdout shows (table.md, table.csv and table.tex are all written)")
    p.add_argument("--out", type=Path, help="where tables and PNGs go (default: the sweep dir)")
    p.add_argument("--reference", type=Path, help="published numbers: CSV teacher,student,method,top1")
    p.add_argument("--name-map", type=Path, help="published -> kdrun names (YAML or CSV)")
    p.add_argument("--recipe", type=Path,
                   help="recipe dir: uses its reference.csv and name_map.yaml (or .csv)")
    p.add_argument("--heatmap", type=_keys, metavar="X,Y",
                   help="keys of the heatmap axes (default: loss.kd.temperature,loss.kd.alpha "
                        "when the sweep varies both)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG files")
    p.add_argument("--precision", type=int, default=2, help="decimals (default: 2)")
    args = p.parse_args(argv)
    if args.out is None:
        if len(args.sweep_dirs) > 1:
            p.error("--out is needed with several sweep dirs (where should table.md go?)")
        args.out = args.sweep_dirs[0]
    if args.heatmap is not None and len(args.heatmap) != 2:
        p.error(f"--heatmap {','.join(args.heatmap)}: give two keys, X,Y")
    return args


def _reference_files(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    reference, name_map = args.reference, args.name_map
    if args.recipe is not None:
        if not args.recipe.is_dir():
            raise FileNotFoundError(f"--recipe {args.recipe}: no such directory")
        if reference is None and (args.recipe / "reference.csv").is_file():
            reference = args.recipe / "reference.csv"
        for name in ("name_map.yaml", "name_map.yml", "name_map.csv"):
            if name_map is None and (args.recipe / name).is_file():
                name_map = args.recipe / name
        if reference is None:
            log.warning("--recipe %s has no reference.csv: no ref column", args.recipe)
    return reference, name_map


def summary_line(cells) -> str:
    counts = Counter(c.status for c in cells)
    return "cells: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)


def run(args: argparse.Namespace) -> int:
    cells = collect_cells(args.sweep_dirs)
    if not cells:
        raise FileNotFoundError(f"no result.json under {', '.join(map(str, args.sweep_dirs))}: "
                                "pass the hydra.sweep.dir of a `kdrun -m` run")
    if args.metric is None:
        from kdrun.report.plots import task_of

        task = task_of(cells)
        args.metric = task.best_key(task.selection.metric)
    check_metric(cells, args.metric)
    table = build_table(cells, args.rows, args.cols, args.metric)
    reference, name_map = _reference_files(args)
    if reference is not None:
        from kdrun.report.reference import attach_reference, load_name_map, load_reference

        attach_reference(table, load_reference(reference, load_name_map(name_map)))
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt, ext in FORMATS.items():
        path = args.out / f"table.{ext}"
        path.write_text(render(table, fmt, args.precision))
        written.append(path)
    if not args.no_plots:
        from kdrun.report.plots import heatmap_axes, plot_curves, plot_heatmaps

        axes = heatmap_axes(cells, tuple(args.heatmap) if args.heatmap else None)
        if axes is not None:
            written += plot_heatmaps(cells, args.metric, axes, args.out, args.precision)
        curves = plot_curves(cells, args.out)
        written += [curves] if curves is not None else []
    print(render(table, args.format, args.precision), end="")
    print()
    print(summary_line(cells))
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("kdrun-table: warning: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False
    args = parse_args(argv)
    try:
        sys.exit(run(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"kdrun-table: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

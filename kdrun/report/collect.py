"""Read the cells of one or more sweep dirs: every result.json, plus the cells that never wrote one.

A cell's identity is its overrides (DESIGN.md), so the config that groups cells is
the result.json identity keys plus the overrides, minus `seed` (the replicate) and
the settings the sweep already keeps out of a cell's name (conf/config.yaml:
logger, trainer.progress, paths, hydra). Cells that were planned but left no
result.json count as "missing": a cell dir without one, or a combination that
the sweep's multirun.yaml expands to but nobody ran (an interrupted sweep).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdrun.tracking.metrics import METRICS_FILE
from kdrun.tracking.result import RESULT_FILE

log = logging.getLogger("kdrun.report")

IDENTITY_KEYS = ("teacher", "student", "loss", "data", "scheme", "algorithm")
STATUSES = ("completed", "failed", "running", "missing")
# Settings that do not change a cell's result (as hydra.job.config.override_dirname.exclude_keys).
IGNORED_KEYS = ("seed", "trainer.progress", "logger")
IGNORED_PREFIXES = ("logger.", "paths.", "hydra.")


@dataclass
class CellRecord:
    dir: Path
    status: str                     # one of STATUSES
    config: dict[str, str]          # what groups cells: identity + overrides, minus seed/ignored
    seed: str | None
    result: dict[str, Any] = field(default_factory=dict)   # result.json ({} when missing)

    def metrics_path(self) -> Path:
        return self.dir / METRICS_FILE


def split_override(text: str) -> tuple[str, str]:
    """`+loss.kd.temperature=4` -> ("loss.kd.temperature", "4"): the key as rows/cols name it."""
    key, _, value = str(text).partition("=")
    return key.lstrip("+"), value


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def override_items(overrides: list[str]) -> tuple[dict[str, str], str | None]:
    """The identity-bearing overrides and the seed override (None when not overridden)."""
    items = dict(split_override(o) for o in overrides or [])
    return {k: v for k, v in items.items() if not _ignored(k)}, items.get("seed")


def _identity_value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if key == "loss" and isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    if key == "loss" and isinstance(value, str) and value.startswith("["):
        return "+".join(p.strip() for p in value.strip("[]").split(",") if p.strip())
    return str(value)


def config_of(result: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """(grouping config, seed) of a result.json: its overrides with identity keys resolved."""
    config, seed = override_items(result.get("overrides") or [])
    for key in IDENTITY_KEYS:
        if key in result:
            config[key] = _identity_value(key, result[key])
    if result.get("seed") is not None:
        seed = str(result["seed"])
    return config, seed


def _status(result: dict[str, Any]) -> str:
    status = result.get("status")
    return status if status in ("completed", "failed") else "running"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s is unreadable (%s): counted as missing", path, e)
        return None
    return data if isinstance(data, dict) else None


def _planned_dir(cell_dir: Path) -> CellRecord:
    """A cell dir Hydra created whose cell left no (readable) result.json: its overrides only."""
    from omegaconf import OmegaConf

    path = cell_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(path) or []] if path.is_file() else []
    return CellRecord(cell_dir, "missing", {}, None, {"overrides": overrides})


def _expected_cells(sweep_dir: Path) -> list[list[str]]:
    """Every cell's overrides as multirun.yaml's basic sweep expands them ([] if unknown)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    try:
        hydra = OmegaConf.to_container(OmegaConf.load(sweep_dir / "multirun.yaml").hydra)
        if not str(hydra["sweeper"].get("_target_", "")).endswith("BasicSweeper"):
            return []  # optuna & co. choose cells as they go: nothing to expect up front
        params = hydra["sweeper"].get("params") or {}
        task = [*hydra["overrides"]["task"], *(f"{k}={v}" for k, v in params.items())]
        parsed = OverridesParser.create().parse_overrides(task)
        return [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]
    except Exception as e:  # a hand-edited or foreign multirun.yaml: count what is there
        log.warning("%s: cannot expand the sweep (%s): missing cells are not counted",
                    sweep_dir / "multirun.yaml", e)
        return []


def _borrow_identity(record: CellRecord, others: list[CellRecord]) -> None:
    """Fill a missing cell's identity from its closest sibling: only overrides are known."""
    items, seed = override_items(record.result.get("overrides") or [])
    record.seed = seed
    mine = set(items.items())
    best = max(others, key=lambda o: len(mine & set(override_items(
        o.result.get("overrides") or [])[0].items())), default=None)
    config = dict(items)
    for key in IDENTITY_KEYS:
        if key in items:
            config[key] = _identity_value(key, items[key])
        elif best is not None and key in best.config:
            config[key] = best.config[key]
        else:
            config[key] = "?"  # nothing to borrow from: the sweep left no result.json at all
    record.config = config


def _identity_of_overrides(overrides: list[str]) -> tuple[frozenset, str | None]:
    items, seed = override_items(overrides)
    return frozenset(items.items()), seed


def collect_cells(dirs: list[Path]) -> list[CellRecord]:
    """Every cell under `dirs` (recursively): completed, failed, running or missing."""
    cells: list[CellRecord] = []
    planned: list[CellRecord] = []
    expected: list[tuple[Path, list[str]]] = []
    for root in map(Path, dirs):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory (pass a sweep dir: "
                                    f"hydra.sweep.dir of a `kdrun -m` run)")
        read = set()
        for path in sorted(root.rglob(RESULT_FILE)):
            if (result := _read(path)) is not None:
                read.add(path.parent)
                cells.append(CellRecord(path.parent, _status(result), *config_of(result), result))
        started = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
        started |= {p.parent for p in root.rglob(RESULT_FILE)}
        planned += [_planned_dir(cell_dir) for cell_dir in sorted(started - read)]
        for multirun in sorted(root.rglob("multirun.yaml")):
            expected += [(multirun.parent, cell) for cell in _expected_cells(multirun.parent)]
    seen = {_identity_of_overrides(c.result.get("overrides") or []) for c in cells}
    for record in planned:
        seen.add(_identity_of_overrides(record.result.get("overrides") or []))
    for sweep_dir, overrides in expected:
        key = _identity_of_overrides(overrides)
        if key not in seen:
            seen.add(key)
            planned.append(CellRecord(sweep_dir, "missing", {}, None, {"overrides": overrides}))
    for record in planned:
        _borrow_identity(record, cells)
    return _drop_duplicates(cells + planned)


def _drop_duplicates(cells: list[CellRecord]) -> list[CellRecord]:
    """One record per (config, seed): the same cell found twice would count twice in a mean."""
    rank = {"completed": 0, "running": 1, "failed": 2, "missing": 3}
    kept: dict[tuple, CellRecord] = {}
    for cell in cells:
        key = (tuple(sorted(cell.config.items())), cell.seed)
        other = kept.get(key)
        if other is None:
            kept[key] = cell
            continue
        if cell.status != "missing" and other.status != "missing":
            log.warning("the same cell (seed %s) is in %s and %s: using the %s one",
                        cell.seed, other.dir, cell.dir,
                        min(cell, other, key=lambda c: rank[c.status]).status)
        if rank[cell.status] < rank[other.status]:
            kept[key] = cell
    return list(kept.values())


def read_metrics(cell: CellRecord) -> list[dict[str, Any]]:
    """metrics.jsonl lines of a cell; a torn last line (cell still writing) is skipped."""
    path = cell.metrics_path()
    lines = path.read_text().splitlines() if path.is_file() else []
    return [record for record in map(_json_or_none, lines) if isinstance(record, dict)]


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None

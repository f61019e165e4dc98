"""Group cells over seeds into a rows x cols table of mean ± std.

Cells whose configs differ only in `seed` are one group. Rows and cols name
config keys (identity keys or override keys); any other key in which the groups
of one table cell differ is added to the rows, with a note, so two configs are
never averaged together. A number is only ever a mean over completed cells:
failed, running and missing cells show as words, and a group that lost some
seeds carries a marker and its counts.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from kdrun.report.collect import IDENTITY_KEYS, CellRecord

log = logging.getLogger("kdrun.report")

ABSENT = "—"           # no cell of the sweep has this combination
DEFAULT = "(default)"  # the key is not overridden in this cell
INCOMPLETE = "*"       # mean over the completed seeds of a group that lost some


@dataclass
class Aggregate:
    """The cells of one group (same config, any seed) reduced to one metric."""

    values: list[float]
    counts: Counter  # status -> cells; "n/a" for completed cells without the metric

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None  # n - 1 in the denominator


def aggregate(cells: list[CellRecord], metric: str) -> Aggregate:
    values, counts = [], Counter()
    for cell in cells:
        value = cell.result.get(metric) if cell.status == "completed" else None
        if cell.status == "completed" and not _is_number(value):
            counts["n/a"] += 1
            continue
        counts[cell.status] += 1
        if cell.status == "completed":
            values.append(float(value))
    return Aggregate(values, counts)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metric(cells: list[CellRecord], metric: str) -> None:
    """Fail early when `metric` is not a numeric result key of any completed cell."""
    done = [c.result for c in cells if c.status == "completed"]
    if done and not any(_is_number(r.get(metric)) for r in done):
        numeric = sorted({k for r in done for k, v in r.items() if _is_number(v)})
        raise ValueError(f"--metric {metric}: no completed cell has a number under this key; "
                         f"numeric result keys: {', '.join(numeric)}")


@dataclass
class Table:
    metric: str
    row_keys: list[str]
    col_keys: list[str]
    rows: list[tuple[str, ...]]
    cols: list[tuple[str, ...]]
    cells: dict[tuple, Aggregate]                 # (row, col) -> aggregate of one group
    constants: dict[str, str]                     # identity keys with one value across the sweep
    added_keys: list[str] = field(default_factory=list)
    ref: dict[tuple, float] | None = None         # (row, col) -> published number


def sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _bucket(configs: list[dict[str, str]], keys: list[str]) -> dict[tuple, set]:
    buckets: dict[tuple, set] = {}
    for config in configs:
        label = tuple(config.get(k, DEFAULT) for k in keys)
        buckets.setdefault(label, set()).add(tuple(sorted(config.items())))
    return buckets


def _keys_to_add(configs: list[dict[str, str]], shown: list[str]) -> list[str]:
    """Keys (beyond `shown`) needed so that each table cell holds one config."""
    every = {k for c in configs for k in c}
    candidates = [k for k in IDENTITY_KEYS if k in every]
    candidates += sorted(every - set(IDENTITY_KEYS))
    added: list[str] = []
    for key in candidates:
        if key in shown:
            continue
        if all(len(b) == 1 for b in _bucket(configs, shown + added).values()):
            break
        if any(len({dict(c).get(key, DEFAULT) for c in b}) > 1
               for b in _bucket(configs, shown + added).values()):
            added.append(key)
    return added


def build_table(cells: list[CellRecord], rows: list[str], cols: list[str], metric: str) -> Table:
    known = {k for c in cells for k in c.config}
    for flag, keys in (("--rows", rows), ("--cols", cols)):
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ValueError(f"{flag} {','.join(keys)}: no cell has the key {unknown[0]!r}; keys: "
                             f"{', '.join(sorted(known, key=lambda k: (k not in IDENTITY_KEYS, k)))}")
    both = set(rows) & set(cols)
    if both:
        raise ValueError(f"--rows and --cols both name {sorted(both)[0]!r}: give it to one of them")
    added = _keys_to_add([c.config for c in cells], rows + cols)
    if added:
        log.warning("cells also differ in %s: added to the rows (place them with --rows/--cols)",
                    ", ".join(added))
    row_keys = rows + added
    groups: dict[tuple, list[CellRecord]] = {}
    for cell in cells:
        row = tuple(cell.config.get(k, DEFAULT) for k in row_keys)
        col = tuple(cell.config.get(k, DEFAULT) for k in cols)
        groups.setdefault((row, col), []).append(cell)
    constants = {k: next(iter(v)) for k in IDENTITY_KEYS
                 if len(v := {c.config.get(k) for c in cells}) == 1 and None not in v}
    return Table(metric, row_keys, list(cols),
                 rows=sorted({r for r, _ in groups}, key=lambda t: tuple(map(sort_key, t))),
                 cols=sorted({c for _, c in groups}, key=lambda t: tuple(map(sort_key, t))),
                 cells={key: aggregate(group, metric) for key, group in groups.items()},
                 constants=constants, added_keys=added)

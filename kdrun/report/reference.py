"""Published numbers next to ours: a `ref` and a `Δ` (ours - ref) column per value column.

A reference CSV has the header teacher,student,method,top1 (as ../shared/reference/*.csv
and recipes/<name>/reference.csv). Papers and kdrun name models differently
(`vgg13` there is the CIFAR zoo's `vgg13_cifar` here), so a name map translates
published names into kdrun names before matching. A published row kdrun has no
cell for stays in the table as a reference-only row or column, with "—" for ours:
a reproduction shows what it has not run yet.

Name map, YAML (sections are optional; a flat mapping applies to every field):

    models:  {vgg13: vgg13_cifar, resnet50: resnet50_cifar}
    methods: {kd+dot: null}     # null: kdrun has no such method, keep it reference-only

or CSV with the header published,kdrun (and optionally field: model | method |
teacher | student); an empty kdrun name means reference-only.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from kdrun.report.table import Table

log = logging.getLogger("kdrun.report")

REF_KEYS = ("teacher", "student", "loss")  # table keys a published row is matched on
_FIELDS = {"teacher": "teacher", "student": "student", "method": "method", "model": "model",
           "models": "model", "methods": "method", "teachers": "teacher", "students": "student"}
NameMap = dict[str, dict[str, str | None]]  # field (model|method|teacher|student) -> name map


@dataclass(frozen=True)
class Published:
    teacher: str
    student: str
    method: str
    top1: float
    reference_only: bool = False  # mapped to null: never matched against our cells


def load_name_map(path: Path | None) -> NameMap:
    if path is None:
        return {}
    path = Path(path)
    if path.suffix == ".csv":
        out: NameMap = {}
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                field = _FIELDS.get((row.get("field") or "all").strip(), "all")
                out.setdefault(field, {})[row["published"].strip()] = (row.get("kdrun") or "").strip() or None
        return out
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--name-map {path}: expected a mapping of published -> kdrun names")
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in _FIELDS:
                raise ValueError(f"--name-map {path}: unknown section {key!r}; use models, "
                                 f"methods, teacher or student")
            out.setdefault(_FIELDS[key], {}).update({str(k): v for k, v in value.items()})
        else:
            out.setdefault("all", {})[str(key)] = value
    return out


def _map(name: str, field: str, name_map: NameMap) -> tuple[str, bool]:
    """(kdrun name, reference_only) for a published name in `field`."""
    for section in (field, "model" if field in ("teacher", "student") else field, "all"):
        if name in name_map.get(section, {}):
            mapped = name_map[section][name]
            return (name, True) if mapped is None else (str(mapped), False)
    return name, False


def load_reference(path: Path, name_map: NameMap | None = None) -> list[Published]:
    rows = []
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"teacher", "student", "method", "top1"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"--reference {path}: the header needs teacher,student,method,top1 "
                             f"(missing {', '.join(sorted(missing))})")
        for row in reader:
            names = {k: _map(row[k].strip(), k, name_map or {})
                     for k in ("teacher", "student", "method")}
            rows.append(Published(names["teacher"][0], names["student"][0], names["method"][0],
                                  float(row["top1"]), any(only for _, only in names.values())))
    return rows


def canonical_method(method: str) -> str:
    """`kd+at` and `at+kd` are one objective: kdrun sums the terms."""
    return "+".join(sorted(method.split("+")))


def attach_reference(table: Table, published: list[Published]) -> None:
    """Fill table.ref and add reference-only rows/cols; warn when the layout cannot match."""
    shown = table.row_keys + table.col_keys
    fixed = {k: table.constants.get(k) for k in REF_KEYS if k not in shown}
    if any(v is None for v in fixed.values()):
        log.warning("reference: put teacher, student and loss in --rows or --cols (or sweep one "
                    "value of each); no ref column")
        return
    values = {}
    for pub in published:
        coords = {"teacher": pub.teacher, "student": pub.student, "loss": pub.method}
        if any(canonical_method(coords[k]) != canonical_method(v) for k, v in fixed.items()):
            continue
        key = (pub.teacher, pub.student, canonical_method(pub.method), pub.reference_only)
        if key in values and values[key][1] != pub.top1:
            log.warning("reference: %s/%s/%s is listed twice (%s, %s): using the last",
                        pub.teacher, pub.student, pub.method, values[key][1], pub.top1)
        values[key] = (coords, pub.top1)
    _add_reference_only(table, [c for c, _ in values.values()])

    def lookup(row: tuple, col: tuple) -> float | None:
        at = {**fixed, **dict(zip(table.row_keys, row)), **dict(zip(table.col_keys, col))}
        hit = values.get((at["teacher"], at["student"], canonical_method(at["loss"]), False))
        only = values.get((at["teacher"], at["student"], canonical_method(at["loss"]), True))
        mine = (row, col) in table.cells
        return (hit or (None if mine else only) or (None, None))[1]

    table.ref = {(r, c): v for r in table.rows for c in table.cols
                 if (v := lookup(r, c)) is not None}


def _add_reference_only(table: Table, coords: list[dict[str, str]]) -> None:
    """Published combinations without a row (or col) of ours get one, blank in other keys."""
    for keys, lines in ((table.row_keys, table.rows), (table.col_keys, table.cols)):
        ref_at = [i for i, k in enumerate(keys) if k in REF_KEYS]
        if not ref_at:
            continue
        have = {tuple(line[i] for i in ref_at) for line in lines}
        for c in coords:
            part = tuple(c[keys[i]] for i in ref_at)
            if part not in have:
                have.add(part)
                lines.append(tuple(c[k] if k in REF_KEYS else "" for k in keys))

"""result.json: the one record of a cell that kdrun-table and external checks read.

Keys follow DESIGN.md (status, student_top1, best_student_top1, val_top1,
teacher_top1, teacher_source, identity keys, epochs_done, wall_s, seed,
overrides, error). Writes are atomic so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_result(cell_dir: Path) -> dict[str, Any] | None:
    path = Path(cell_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def write_result(cell_dir: Path, result: dict[str, Any]) -> None:
    write_json_atomic(Path(cell_dir) / RESULT_FILE, result)

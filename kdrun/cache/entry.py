"""One cache entry's life: made once under a file lock, written whole or not at all.

Every cache of computed arrays (teacher outputs, top-k token outputs, teacher generations)
is a folder whose meta.json is written last. A finished entry that fails its caller's
check (torn by a crash or a full disk) is set aside as `<entry>.corrupt` and made again; a
new entry is filled in `<entry>.partial` and renamed into place, so readers never see half.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from kdrun.tracking.checkpoint import set_aside
from kdrun.tracking.result import write_json_atomic


def make_once(entry: Path, damage: Callable[[Path], str | None],
              fill: Callable[[Path], dict[str, Any]]) -> Path:
    """`entry`, filled by `fill(folder) -> meta` unless a finished copy passes `damage(entry)`
    (None: servable; else the reason it is not). Concurrent callers wait on the lock."""
    with FileLock(str(entry) + ".lock"):
        if (entry / "meta.json").is_file():
            reason = damage(entry)
            if reason:
                set_aside(entry, reason)
        if not (entry / "meta.json").is_file():
            partial = entry.with_name(entry.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            meta = fill(partial)
            write_json_atomic(partial / "meta.json", meta)
            shutil.rmtree(entry, ignore_errors=True)
            partial.rename(entry)
    return entry


def content_digest(path: Path) -> str:
    """sha256 of a weights file, or of every file of a model directory in name order: the
    teacher part of a cache key when the teacher has no content key (a user checkpoint)."""
    digest = hashlib.sha256()
    path = Path(path)
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()

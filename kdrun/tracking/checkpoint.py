"""Checkpoint files: atomic writes, and reads that never crash on a torn or foreign file.

Every torch.load in kdrun goes through `load_file` (weights_only: a pickle that would
run code is refused). A user's file that fails is a config error naming its key; one of
kdrun's own files that fails (a crash mid-write by another tool, a full disk) is set
aside as `<name>.corrupt` and rebuilt.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

_REFUSED = "Weights only load failed"
_DETAIL = "WeightsUnpickler error:"


class UnreadableFile(ValueError):
    """torch.load(weights_only=True) failed on `path`: torn, not PyTorch's, or code."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: not a loadable weights file ({reason})")


def short_reason(e: Exception) -> str:
    """One short line: torch's messages run to a paragraph of advice around the cause."""
    text = str(e)
    refused = text.startswith(_REFUSED)
    if refused:  # skip the advice to the line that says what weights_only refused
        text = text.split(_DETAIL, 1)[1] if _DETAIL in text else text.partition("\n")[2]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("Check the documentation")]
    first = lines[0].split(". ")[0].rstrip(".")[:160] if lines else ""
    if refused:
        return f"weights_only refused it: {first}".rstrip(": ")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_file(path: str | Path) -> Any:
    """torch.load on CPU with weights_only=True; any failure of the content is UnreadableFile."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise on a bad file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # the file system (missing, permissions), not the file's content
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError...
        raise UnreadableFile(path, short_reason(e)) from e


def set_aside(path: str | Path, why: str) -> Path:
    """Rename a corrupt file or folder of kdrun's own to `<name>.corrupt` (never delete it),
    replacing an older one, and say so."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    if aside.is_dir():
        shutil.rmtree(aside)
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another process (a DDP rank) moved it first
        pass
    log.warning("%s is corrupt (%s): kept aside as %s, rebuilding it", path, why, aside.name)
    return aside


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """kdrun's own checkpoint at `path`, or None when there is none yet or it is unreadable
    (then it is set aside and the caller starts that part over)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except UnreadableFile as e:
        set_aside(path, e.reason)
        return None

"""The registry finds every method file by itself and reads its knowledge off the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import kdrun.losses
from kdrun.losses import DistillationLoss, loss_classes, register_loss
from kdrun.losses.registry import knowledge_of

ROOT = Path(kdrun.losses.__path__[0])
FOLDERS = ("response", "feature", "relation")


def method_files() -> dict[str, str]:
    """name -> folder, for every file that registers a method."""
    return {path.stem: path.parent.name for folder in FOLDERS
            for path in sorted((ROOT / folder).glob("*.py")) if "@register_loss" in path.read_text()}


def test_every_method_file_is_registered_under_its_name():
    assert set(loss_classes()) == set(method_files())


@pytest.mark.parametrize("name,folder", sorted(method_files().items()))
def test_knowledge_is_the_folder_or_none_without_a_teacher(name, folder):
    cls = loss_classes()[name]
    assert cls.__module__ == f"kdrun.losses.{folder}.{name}"
    assert cls.knowledge == (folder if cls.needs_teacher else "none")


def test_teacher_free_baselines_report_none():
    assert {n for n, c in loss_classes().items() if c.knowledge == "none"} == {"ce", "ls", "denoise", "dino"}


def test_a_method_outside_its_file_is_refused():
    class Elsewhere(DistillationLoss):
        name = "elsewhere"

    with pytest.raises(ValueError, match="kdrun/losses/<knowledge>/elsewhere.py"):
        register_loss(Elsewhere)
    Elsewhere.__module__ = "kdrun.losses.response.kd"       # right folder, wrong file
    with pytest.raises(ValueError, match="move it there"):
        knowledge_of(Elsewhere)
    assert "elsewhere" not in loss_classes()

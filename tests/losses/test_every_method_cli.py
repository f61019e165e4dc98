"""`kdrun loss=<name>` runs one epoch on digits for every method of the library (slow: one
CLI run per method), and `kdrun --cfg job loss=<name>` shows the paper defaults."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, run_kdrun

from kdrun.losses import loss_classes

# Pre-training stages and warm-ups shrink to one epoch so that each run stays short.
SHORT = {"fitnet": "short/fitnet", "ab": "short/ab", "ft": "short/ft", "fsp": "short/fsp",
         "dkd": "short/dkd", "reviewkd": "short/reviewkd"}
# methods that need a particular student (deit: a ViT with a distillation token)
STUDENTS = {"deit": ["student=deit_tiny", "+student.kwargs.depth=1", "+student.kwargs.patch_size=8"]}


# every method written for image classification (the token-level ones run in tests/tasks/)
METHODS = [name for name, cls in sorted(loss_classes().items()) if "classification" in cls.tasks]


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_every_method_runs_one_epoch_on_digits(name, tmp_path):
    cell = tmp_path / "cell"
    args = [*TINY, *STUDENTS.get(name, []), f"loss={SHORT.get(name, name)}", "trainer.epochs=1",
            "trainer.threads=1", f"paths.output_dir={tmp_path}", f"hydra.run.dir={cell}"]
    run_kdrun(args, cwd=tmp_path, check=True)
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["loss"] == [name]


def test_cfg_job_shows_the_paper_defaults(tmp_path):
    proc = run_kdrun(["--cfg", "job", "loss=[crd,dkd,at]"], cwd=tmp_path, check=True)
    for line in ("temperature: 0.07", "beta: 8.0", "beta: 1000.0", "warmup_epochs: 20"):
        assert line in proc.stdout, line

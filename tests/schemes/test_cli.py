"""Every scheme and method runs by name from the CLI (a multirun per scheme); the
compositions with at and sp also run in process (test_online.py, test_self.py)."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, run_kdrun


@pytest.mark.parametrize("args,cells", [
    (["scheme=online", "scheme.method=dml,one", "loss=kd,[kd,sp]"], 4),
    (["scheme=self", "scheme.method=ban,byot,tfkd,cskd", "scheme.generations=1", "loss=kd"], 4),
    pytest.param(["scheme=self", "scheme.method=ban,byot,cskd", "scheme.generations=1",
                  "loss=[kd,at,sp]"], 3, marks=pytest.mark.slow),
    pytest.param(["scheme=online", "loss=[kd,at,sp]"], 1, marks=pytest.mark.slow),
])
def test_schemes_run_by_name(tmp_path, args, cells):
    sweep = tmp_path / "sweep"
    # ONE with a relation method is not a combination: its teacher has logits only
    run_kdrun(["-m", *TINY, "trainer.epochs=1", *args, f"paths.output_dir={tmp_path}",
               f"hydra.sweep.dir={sweep}"], cwd=tmp_path, check=True)
    results = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(results) == cells
    for result in results:
        one_with_sp = "scheme.method=one" in result["overrides"] and "sp" in result["loss"]
        assert result["status"] == ("failed" if one_with_sp else "completed"), result.get("error")
        if one_with_sp:
            assert "logits only" in result["error"]
        else:
            assert 0 <= result["student_top1"] <= 100 and result["teacher"] is None

"""The `kdrun` command's final log line, from a real run of the CLI."""

from __future__ import annotations

import re

import pytest
from helpers import TINY, run_kdrun

FIGURE = r"\d+\.\d\d%"


@pytest.mark.parametrize("overrides,teacher", [([], FIGURE), (["loss=ce"], "none")],
                         ids=["kd", "no-teacher"])
def test_result_line_formats_every_figure_alike(tmp_path, overrides, teacher):
    proc = run_kdrun([*TINY, *overrides], cwd=tmp_path, check=True)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "result: student" in line]
    assert len(lines) == 1, proc.stdout + proc.stderr
    pattern = (rf"result: student {FIGURE} \(best-val epoch {FIGURE}\), val {FIGURE}, "
               rf"teacher {teacher} -> \S+result\.json$")
    assert re.search(pattern, lines[0]), lines[0]

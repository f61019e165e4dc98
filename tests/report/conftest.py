"""Fake sweep cells for the kdrun-table tests: hand-written result.json and metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SWEEP_PREFIX = ["logger=none", "trainer.progress=False"]  # ignored keys: never split groups


def write_cell(sweep: Path, overrides: list[str], value: float | None = None, *,
               status: str = "completed", metric: str = "best_student_top1",
               teacher: str | None = "resnet32", student: str = "resnet8",
               loss: list[str] | None = None, epochs: list[dict] | None = None,
               **extra) -> Path:
    """One cell dir named from its overrides, as a `kdrun -m` sweep writes it."""
    items = dict(o.split("=", 1) for o in overrides)
    seed = int(items.get("seed", 0))
    if loss is None:
        raw = items.get("loss", "kd")
        loss = raw.strip("[]").split(",")
    cell = sweep / ",".join(sorted(overrides))
    cell.mkdir(parents=True)
    done = status == "completed"
    result = {"status": status, "teacher": teacher, "student": student, "loss": loss,
              "scheme": "offline", "algorithm": "vanilla", "data": "digits", "seed": seed,
              "overrides": [*SWEEP_PREFIX, *overrides, f"paths.output_dir={sweep.parent}"],
              "student_top1": value if done else None, "best_student_top1": None,
              "val_top1": value if done else None, "teacher_top1": 90.0 if done else None,
              "teacher_source": "cache" if done else None, "epochs_done": 2 if done else 0,
              "wall_s": 1.5, **({"error": "RuntimeError: boom"} if status == "failed" else {}),
              **extra}
    result[metric] = value if done else None
    (cell / "result.json").write_text(json.dumps(result, indent=2))
    for epoch in epochs or []:
        with (cell / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(epoch) + "\n")
    return cell


def curve(val: list[float], loss0: float = 2.0) -> list[dict]:
    """metrics.jsonl lines: val/test top-1 and a falling total loss per epoch."""
    return [{"epoch": i + 1, "loss": loss0 / (i + 1), "loss/ce": loss0 / (i + 2), "val_top1": v,
             "test_top1": v - 1.0, "train_top1": v + 5.0, "lr": 0.05, "epoch_s": 0.1}
            for i, v in enumerate(val)]


@pytest.fixture
def cell():
    return write_cell


@pytest.fixture
def epochs():
    return curve

"""The Pareto front of a nas sweep: the trials no other trial beats on every objective.

`ParetoFront` is a Hydra callback (conf/hparams_search/nas.yaml configures it) that,
at the end of the sweep, reads every nas cell's result.json and writes
<sweep dir>/pareto.json (every trial and the non-dominated ones) and, when matplotlib
is installed, pareto.png. Objectives: validation top-1 up, parameters and latency down
(validation, never test: the front is part of the search). Trials over budget were not
trained, have no val_top1 and are listed but never on the front.

    from kdrun.algorithms.nas_front import write_front; write_front("<sweep dir>")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdrun.tracking.result import RESULT_FILE, read_result, write_json_atomic

log = logging.getLogger("kdrun")

OBJECTIVES = {"val_top1": "max", "student_params": "min", "latency_ms": "min"}
FRONT_FILE, PLOT_FILE = "pareto.json", "pareto.png"
TRIAL_KEYS = ("status", "student", "student_arch", "student_params", "latency_ms", "val_top1",
              "student_top1", "best_student_top1", "objective", "budget", "overrides", "error")


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Mapping[str, str]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    def better(k, strict):
        if objectives[k] == "max":
            return a[k] > b[k] if strict else a[k] >= b[k]
        return a[k] < b[k] if strict else a[k] <= b[k]

    return all(better(k, False) for k in objectives) and any(better(k, True) for k in objectives)


def pareto_front(points: Sequence[Mapping[str, Any]],
                 objectives: Mapping[str, str] = OBJECTIVES) -> list[Mapping[str, Any]]:
    """The points (having every objective) that no other point dominates, in input order."""
    for key, direction in objectives.items():
        if direction not in ("max", "min"):
            raise ValueError(f"objective {key}: direction {direction!r} is not max or min")
    scored = [p for p in points if all(p.get(k) is not None for k in objectives)]
    return [p for p in scored if not any(dominates(q, p, objectives) for q in scored)]


def collect_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """One record per nas cell of the sweep (status, architecture, size, latency, accuracy)."""
    trials = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}")):
        result = read_result(path.parent) or {}
        if result.get("algorithm") != "nas":
            continue
        trials.append({"cell": path.parent.name, **{k: result.get(k) for k in TRIAL_KEYS}})
    return trials


def write_front(sweep_dir: str | Path, objectives: Mapping[str, str] = OBJECTIVES,
                plot: bool = True) -> dict[str, Any]:
    sweep_dir = Path(sweep_dir)
    trials = collect_trials(sweep_dir)
    completed = [t for t in trials if t["status"] == "completed"]
    front = pareto_front(completed, objectives)
    ranked = sorted((t for t in completed if t["objective"] is not None),
                    key=lambda t: t["objective"], reverse=True)
    summary = {"objectives": dict(objectives), "trials": trials, "front": front,
               "best": ranked[0] if ranked else None}
    write_json_atomic(sweep_dir / FRONT_FILE, summary)
    if plot and front:
        _plot(completed, front, sweep_dir / PLOT_FILE)
    return summary


def _plot(trials: list[dict], front: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional; pareto.json has everything
        return
    trained = [t for t in trials if t["val_top1"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([t["student_params"] for t in trained], [t["val_top1"] for t in trained],
               c="lightgray", label="trials")
    line = sorted(front, key=lambda t: t["student_params"])
    ax.plot([t["student_params"] for t in line], [t["val_top1"] for t in line], "o-",
            c="tab:blue", label="Pareto front")
    for t in line:
        ax.annotate(t["student"], (t["student_params"], t["val_top1"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("student parameters")
    ax.set_ylabel("val top-1 (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class ParetoFront(Callback):
    """Writes pareto.json (+ pareto.png) into the sweep dir when the sweep ends."""

    def __init__(self, objectives: Mapping[str, str] | None = None, plot: bool = True) -> None:
        self.objectives = dict(objectives) if objectives else dict(OBJECTIVES)
        self.plot = plot

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = write_front(config.hydra.sweep.dir, self.objectives, self.plot)
        log.info("nas: %d trials, %d on the Pareto front -> %s", len(summary["trials"]),
                 len(summary["front"]), Path(config.hydra.sweep.dir) / FRONT_FILE)
        for t in summary["front"]:
            log.info("  front: %s val %.2f%% params %d latency %.2f ms", t["student"],
                     t["val_top1"], t["student_params"], t["latency_ms"])

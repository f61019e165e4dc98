"""The `kdrun` command: Hydra composes the config, kdrun runs the cell.

    kdrun                                       default job (digits, offline)
    kdrun teacher=resnet50 student=mobilenet loss=at
    kdrun -m loss.kd.temperature=1,4 loss.kd.alpha=0.5,0.9
    kdrun --help | --cfg job                    Hydra's introspection
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.plugins import load_plugins
from kdrun.tasks import task_for

log = logging.getLogger("kdrun")

load_plugins()


@hydra.main(version_base="1.3", config_path="pkg://kdrun.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from kdrun.engine.cell import run_cell

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    cell_dir = Path(hc.runtime.output_dir)
    group = Path(hc.sweep.dir).name if multirun else None
    parallel = int(OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1)
    placement = None
    if multirun and parallel > 1:  # several cells at once on this machine: split the cores
        from kdrun.engine.placement import place_cell

        placement = place_cell(Path(hc.sweep.dir), parallel, cfg.trainer.device)
        if cfg.trainer.threads is None:
            cfg.trainer.threads = placement["threads"]
        if "device" in placement:
            cfg.trainer.device = placement["device"]
    from kdrun.engine import distributed

    ddp_device = distributed.init_from_env(cfg.trainer.device)  # torchrun: join the group
    if ddp_device is not None:
        cfg.trainer.device = str(ddp_device)
    try:
        result = run_cell(cfg, cell_dir, list(hc.overrides.task), group=group,
                          extra={"placement": placement} if placement else None)
    except ConfigError as e:
        if not multirun:
            print(f"kdrun: error: {e}", file=sys.stderr)
            sys.exit(2)
        log.error("cell %s failed: %s", cell_dir.name, e)
        return math.nan
    except Exception:
        if not multirun:
            raise
        # A failing cell never takes the sweep down: it is recorded as failed in its
        # result.json and the sweep goes on.
        log.error("cell %s failed:\n%s", cell_dir.name, traceback.format_exc())
        return math.nan
    finally:
        distributed.shutdown()
    task = task_for(result.get("task"))
    chosen = task.selection.metric
    if result.get("skipped"):
        log.info("skipped %s (completed earlier)", cell_dir.name)
    elif result.get(task.last_key(chosen)) is None:  # nothing trained (a nas trial over its budget)
        log.info("result: no student trained -> %s", cell_dir / "result.json")
    else:
        shown = lambda key: "none" if result.get(key) is None else task.format(chosen, result[key])  # noqa: E731
        log.info("result: student %s (best-val epoch %s), val %s, teacher %s -> %s",
                 shown(task.last_key(chosen)), shown(task.best_key(chosen)),
                 shown(task.val_key(chosen)), shown(task.teacher_key(chosen)),
                 cell_dir / "result.json")
    # what a sweep optimises: the task's validation metric (val_top1, val_ppl), or the
    # algorithm's own `objective` (nas: a budget penalty)
    value = result.get("objective", result.get(task.val_key(chosen)))
    return float(value) if value is not None else math.nan


def one_line(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line composition errors as one line naming the key."""
    def lines(part: BaseException | None) -> list[str]:
        found = [] if part is None else [line.strip() for line in str(part).splitlines()]
        return [line for line in found if line and not line.startswith(
            ("full_key:", "reference_type=", "object_type=", "Config search path", "provider="))]

    head, *rest = lines(error) or [type(error).__name__]
    cause = (lines(error.__cause__) or [""])[0]
    if match := re.match(r"Error merging override (\S+)", head):
        return f"{match[1]}: {cause}"
    if match := re.match(r"Could not override '(.+)'\.", head):
        return f"{match[1]}: {cause or 'no such key'} (a new key needs a leading +)"
    if match := re.match(r"In '.*': Could not find '(.+)/(.+)'", head):
        options = [line for line in rest if not line.startswith("Available options")]
        return f"{match[1]}={match[2]}: no such option; available: {', '.join(options)}"
    return "; ".join([head, *rest, *([cause] if cause else [])])


def main() -> None:
    """Bad input (an unknown key, a wrong type, a missing option) ends in one line and exit
    code 2; set HYDRA_FULL_ERROR=1 for Hydra's own report with its stack trace."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        _hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing several lines
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        print(f"kdrun: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


if __name__ == "__main__":
    main()

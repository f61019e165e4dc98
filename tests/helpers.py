"""Helpers shared by the tests: compose kdrun's config as the CLI does, run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from kdrun.plugins import load_plugins
from kdrun.engine import loop

# Small enough to run a teacher and a student end to end in seconds on 2 CPU cores.
TINY = ["teacher=resnet8", "student=resnet8", "data.max_train=120", "data.max_val=40",
        "data.max_test=40", "data.batch_size=32", "trainer.epochs=2", "teacher.train.epochs=1",
        "logger=none", "trainer.progress=false"]


def compose_config(overrides: list[str], tmp_path: Path) -> DictConfig:
    """The job config for `overrides`, with outputs and caches under tmp_path."""
    load_plugins()
    paths = [f"paths.output_dir={tmp_path}/outputs", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, *paths])


def run_kdrun(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI as a user does (python -m kdrun), outputs under cwd."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "kdrun", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kdrun {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def interrupt_checkpoint(monkeypatch, when):
    """Make the loop's checkpoint write raise KeyboardInterrupt, as a kill would, when
    when(state, path) holds; returns a function that restores the real write."""
    real_save = loop.save_atomic

    def save(obj, path):
        if when(obj, path):
            raise KeyboardInterrupt("simulated interruption")
        real_save(obj, path)

    monkeypatch.setattr(loop, "save_atomic", save)
    return lambda: monkeypatch.setattr(loop, "save_atomic", real_save)


FASHION_MNIST_MISSING = ("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist); "
                         ".ci/run installs it")


def require_fashion_mnist(root: str | Path | None = None) -> Path:
    """The folder of the real Fashion-MNIST idx files (Debian's dataset-fashion-mnist by
    default). Missing: the test skips, except under CI=true, where .ci/run installs the
    package, so there it fails with the same one-line reason."""
    import pytest

    from kdrun.data.sources.fashion_mnist import DEFAULT_ROOT, find_idx_files

    root = Path(root or DEFAULT_ROOT)
    if find_idx_files(root) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(FASHION_MNIST_MISSING, pytrace=False)
        pytest.skip(FASHION_MNIST_MISSING)
    return root


def kill_then_rerun(args: list[str], cwd: Path, ready: Callable[[], bool],
                    timeout: float = 300) -> None:
    """Start `kdrun args`, kill -9 its whole process group once ready() holds (e.g. an epoch
    is checkpointed), check result.json says running, then rerun the same command to the end."""
    import json
    import signal
    import time

    run_dir = next(Path(a.split("=", 1)[1]) for a in args if a.startswith("hydra.run.dir="))
    proc = subprocess.Popen([sys.executable, "-m", "kdrun", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "result.json").read_text())["status"] == "running"
    run_kdrun(args, cwd=cwd, check=True)


def epoch_checkpointed(cell: Path) -> Callable[[], bool]:
    """ready() for kill_then_rerun: the cell has a last.pt and a metrics line."""
    return lambda: (cell / "checkpoints" / "last.pt").is_file() and (cell / "metrics.jsonl").is_file()


def metrics_lines(cell: Path) -> list[dict]:
    """metrics.jsonl without its timings: what an interrupted and resumed run must repeat."""
    import json

    return [{k: v for k, v in json.loads(x).items() if k != "epoch_s"}
            for x in (cell / "metrics.jsonl").read_text().splitlines()]

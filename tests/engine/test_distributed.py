"""Data-parallel cells under torchrun (gloo on CPU), and the AMP / channels_last switches."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from helpers import TINY

from kdrun.data import build_data
from kdrun.engine.cell import run_cell


def test_train_shards_are_disjoint_equal_and_cover_the_epoch(compose_cfg):
    cfg = compose_cfg([*TINY, "data.max_train=101", "data.batch_size=8"])
    seen = []
    for rank in range(2):
        loader = build_data(cfg.data, cfg.seed).train
        loader.shard(rank, 2)
        loader.set_epoch(3)
        seen.append(torch.cat([b.index for b in loader]))
    assert len(seen[0]) == len(seen[1])
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_torchrun_two_processes_write_one_cell(tmp_path):
    cell = tmp_path / "cell"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "kdrun", *TINY, "data.batch_size=16", f"paths.output_dir={tmp_path}",
           f"hydra.run.dir={cell}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["world_size"] == 2
    lines = (cell / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]  # rank 0 alone writes
    assert (cell / "checkpoints" / "last.pt").is_file()


def test_amp_and_channels_last_switches(compose_cfg, tmp_path):
    overrides = [*TINY, "trainer.amp=bf16", "trainer.channels_last=true"]
    result = run_cell(compose_cfg(overrides), tmp_path / "bf16", overrides)
    assert result["status"] == "completed"
    fp16 = run_cell(compose_cfg([*TINY, "trainer.amp=fp16", "loss=ce"]), tmp_path / "fp16", [])
    assert fp16["status"] == "completed"
    state = torch.load(tmp_path / "fp16" / "checkpoints" / "last.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the fp16 gradient scaler is checkpointed

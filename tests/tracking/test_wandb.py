"""The W&B run is offline, lives in the cell dir, and is finished, also when the job raises."""

from __future__ import annotations

import time

import pytest
import wandb
from helpers import TINY
from wandb.proto import wandb_internal_pb2

from kdrun.engine.cell import run_cell


def read_wandb_log(path):
    """Payloads of a .wandb file: a 7-byte header (':W&B', magic, version), then
    LevelDB-style log records (crc32c:4, length:2 LE, type:1) in 32 KiB blocks."""
    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, payloads, pending = 7, 32768, [], b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:           # too little room left for a header: padding
            pos += block - pos % block
            continue
        length = int.from_bytes(raw[pos + 4:pos + 6], "little")
        kind = raw[pos + 6]
        chunk = raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):                    # FULL or LAST ends a payload
            payloads.append(pending)
            pending = b""
    return payloads


def wandb_records(cell):
    """(record type, record) pairs of the cell's offline W&B transaction log."""
    (log_file,) = cell.glob("wandb/offline-run-*/run-*.wandb")
    records = []
    for data in read_wandb_log(log_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        records.append((record.WhichOneof("record_type"), record))
    return records


def exit_codes(cell, wait_s=30.0):
    """Exit codes recorded in the log; wandb-core appends the exit record just after
    finish() returns, so wait for it a little."""
    deadline = time.monotonic() + wait_s
    while True:
        codes = [r.exit.exit_code for kind, r in wandb_records(cell) if kind == "exit"]
        if codes or time.monotonic() > deadline:
            return codes
        time.sleep(0.1)


def logged_keys(cell):
    keys = set()
    for kind, record in wandb_records(cell):
        if kind == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return keys


def test_offline_run_in_cell_dir_is_finished(compose_cfg, tmp_path):
    overrides = [*TINY, "logger=wandb", "loss=[at,kd]", "trainer.epochs=1"]
    cell = tmp_path / "cell"
    run_cell(compose_cfg(overrides), cell, overrides)
    assert wandb.run is None
    assert exit_codes(cell) == [0]
    assert {"loss/ce", "loss/kd", "loss/at", "val_top1", "test_top1", "epoch"} <= logged_keys(cell)


def test_run_is_finished_when_the_job_raises(compose_cfg, tmp_path, monkeypatch):
    from kdrun.engine import distiller

    def boom(self, batch):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(distiller.Distiller, "forward", boom)
    cell = tmp_path / "cell"
    with pytest.raises(RuntimeError):
        run_cell(compose_cfg([*TINY, "logger=wandb", "loss=ce"]), cell, [])
    assert wandb.run is None
    assert exit_codes(cell) == [1]

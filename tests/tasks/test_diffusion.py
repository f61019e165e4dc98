"""task=diffusion end to end on tiny digits: a cell's result keys, sample grids and W&B
files, kill -9 and resume, a sweep that trains the teacher and the FD scorer once (and
kdrun-table on it), the round objective's target, and one-line refusals of bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import run_kdrun

from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.losses.response.progressive import Progressive, ProgressiveConfig
from kdrun.models.registry import create_model
from kdrun.models.zoo.denoiser import ddim_step
from kdrun.tasks.diffusion import DiffusionObjective

TINY = ["task=diffusion", "data.max_train=64", "data.max_val=32", "data.max_test=32",
        "teacher.train.epochs=1", "trainer.epochs=2", "task.teacher_steps=4", "task.fd_samples=32",
        "task.grid_samples=16", "task.scorer_epochs=1", "trainer.progress=false",
        "trainer.threads=1"]
RESULT_KEYS = ("student_fd", "best_student_fd", "val_fd", "teacher_fd")


def cell_args(tmp, run_dir, *extra):
    return [*TINY, *extra, f"paths.output_dir={tmp}/out", f"paths.cache_dir={tmp}/cache",
            f"hydra.run.dir={run_dir}"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A two-cell sweep (progressive, denoise) with W&B offline: the cells the tests read and
    the uninterrupted reference of the resume test."""
    tmp = tmp_path_factory.mktemp("diffusion")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
           **{v: str(tmp / v.lower()) for v in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                                                 "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")}}
    args = ["-m", *TINY, "logger=wandb", "loss=progressive,denoise", f"paths.output_dir={tmp}/out",
            f"paths.cache_dir={tmp}/cache", f"hydra.sweep.dir={tmp}/sweep"]
    proc = run_kdrun(args, cwd=tmp, env=env, check=True)
    cells = {json.loads(p.read_text())["loss"][0]: p.parent for p in (tmp / "sweep").glob("*/result.json")}
    return tmp, cells, proc.stdout + proc.stderr


def test_default_composes_digits_at_16px_and_a_tiny_denoiser(compose_cfg):
    cfg = compose_cfg(["task=diffusion"])
    assert (cfg.data.name, cfg.data.image_size, cfg.data.normalize, cfg.data.augment) == (
        "digits", 16, False, False)
    assert cfg.teacher.name == cfg.student.name == "denoiser_tiny"
    assert list(cfg.loss) == ["progressive"] and cfg.loss.progressive.weighting == "truncated_snr"
    assert (cfg.task.teacher_steps, cfg.task.rounds) == (8, 2)


def test_a_cell_writes_fd_per_round_sample_grids_and_wandb_files(sweep):
    cell = sweep[1]["progressive"]
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["task"] == "diffusion"
    for key in RESULT_KEYS:
        assert math.isfinite(result[key]) and result[key] >= 0, key
    assert [r["steps"] for r in result["rounds"]] == [2, 1] and result["steps"] == 1
    assert result["student_fd"] == result["rounds"][-1]["student_fd"]
    assert all(r["sample_s"] > 0 and math.isfinite(r["undistilled_fd"]) for r in result["rounds"])
    for name in ("samples_teacher.png", "samples_round1.png", "samples_round2.png"):
        assert (cell / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [(x["epoch"], x["steps"]) for x in lines] == [(1, 2), (2, 1)]
    assert all(x["loss"] > 0 and x["test_fd"] == r["best_student_fd"]
               for x, r in zip(lines, result["rounds"]))
    epochs = [json.loads(x) for x in (cell / "metrics.round1.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in epochs] == [1, 2] and "loss/progressive" in epochs[0]
    assert min(x["val_fd"] for x in epochs) == result["rounds"][0]["val_fd"]
    runs = list((cell / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    assert list(runs[0].glob("files/media/images/samples/round*.png"))


def test_kill_mid_round_and_resume_equals_uninterrupted(sweep):
    tmp, cells, _ = sweep
    reference = cells["progressive"]
    killed = tmp / "killed"
    args = cell_args(tmp, killed, "logger=none")
    proc = subprocess.Popen([sys.executable, "-m", "kdrun", *args], cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    last = killed / "rounds" / "round1" / "checkpoints" / "last.pt"
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.02)
    assert proc.poll() is None, "the cell ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "result.json").read_text())["status"] == "running"
    assert not (killed / "rounds" / "round1" / "round.json").exists()
    run_kdrun(args, cwd=tmp, check=True)
    a = json.loads((reference / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1 and b["teacher_source"] == "cache"
    for key in RESULT_KEYS:
        assert a[key] == b[key], key
    timing = ("wall_s", "sample_s")
    assert ([{k: v for k, v in r.items() if k not in timing} for r in a["rounds"]]
            == [{k: v for k, v in r.items() if k not in timing} for r in b["rounds"]])


def test_a_sweep_trains_the_teacher_and_the_scorer_once_and_tables_fd(sweep):
    tmp, cells, log = sweep
    results = {loss: json.loads((cell / "result.json").read_text()) for loss, cell in cells.items()}
    assert sorted(results) == ["denoise", "progressive"]
    assert all(r["status"] == "completed" for r in results.values())
    assert sorted(r["teacher_source"] for r in results.values()) == ["cache", "trained"]
    assert sorted(r["fd_scorer"]["source"] for r in results.values()) == ["cache", "trained"]
    assert log.count("training teacher denoiser_tiny") == 1
    assert log.count("training teacher resnet8") == 1  # the FD scorer
    assert len({r["teacher_fd"] for r in results.values()}) == 1  # same teacher, noise, scorer
    epochs = [json.loads(x) for x in (cells["denoise"] / "metrics.round1.jsonl").read_text().splitlines()]
    assert "loss/denoise" in epochs[0] and "loss/progressive" not in epochs[0]
    from kdrun.report.cli import parse_args, run

    assert run(parse_args([str(tmp / "sweep"), "--rows", "student", "--cols", "loss",
                           "--no-plots"])) == 0
    table = (tmp / "sweep" / "table.md").read_text()
    assert "best_student_fd" in table and "denoise" in table and "progressive" in table


def test_the_round_objective_distils_two_teacher_steps_into_one():
    """Replaying the objective's random draws: its target is two DDIM steps of the teacher
    on the student's grid, and its loss is progressive's on that target."""
    torch.manual_seed(0)
    teacher = create_model("denoiser_tiny", num_classes=10, in_chans=1)
    student = create_model("denoiser_tiny", num_classes=10, in_chans=1)
    loss = Progressive(ProgressiveConfig(), None, None)
    objective = DiffusionObjective(student, loss, teacher=teacher, steps=4)
    batch = Batch(torch.rand(3, 1, 16, 16), torch.zeros(3, dtype=torch.long), torch.arange(3))
    torch.manual_seed(1)
    terms, errors = objective(batch)
    torch.manual_seed(1)
    t = torch.randint(1, 5, (3,)).float() / 4
    eps = torch.randn(3, 1, 16, 16)
    x = batch.x * 2 - 1
    from kdrun.losses.response.progressive import distilled_target, x_prediction
    from kdrun.models.zoo.denoiser import NoisyBatch

    noisy = NoisyBatch.of(x, eps, t)
    with torch.no_grad():
        z_half = ddim_step(teacher.predict_x(noisy.z, t), noisy.z, t, t - 0.125)
        z_full = ddim_step(teacher.predict_x(z_half, t - 0.125), z_half, t - 0.125, t - 0.25)
        target = distilled_target(noisy.z, z_full, t, t - 0.25)
        x_hat = x_prediction(student(noisy.z, t).logits, noisy)
    assert torch.allclose(errors, (x_hat - target).square().flatten(1).mean(1), atol=1e-5)
    assert set(terms) == {"progressive"} and terms["progressive"].requires_grad
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("extra, message", [
    (["student=denoiser_small"], "student=denoiser_small differs from teacher=denoiser_tiny"),
    (["data.normalize=true"], "data.normalize=true: task=diffusion models pixels in [-1, 1]"),
    (["task.rounds=3"], "task.rounds=3 halves task.teacher_steps=4 to a fraction of a step"),
    (["loss=kd"], "loss=kd is written for task=classification"),
    (["loss=[progressive,denoise]"], "task=diffusion trains with one of loss=progressive"),
    (["teacher=resnet8", "student=resnet8"], "student=resnet8 is an image model but task=diffusion"),
    (["loss.progressive.weighting=snr"], "loss.progressive.weighting=snr: unknown weighting"),
    (["task.fd_samples=4"], "task.fd_samples=4"),
    (["task.scorer=resnet9x"], "task.scorer=resnet9x: unknown model"),
    (["task.scorer=denoiser_tiny"], "task.scorer=denoiser_tiny is not an image classifier"),
])
def test_bad_diffusion_input_fails_before_training(compose_cfg, tmp_path, extra, message):
    overrides = [*TINY, "logger=none", *extra]
    with pytest.raises(ConfigError, match=None) as error:
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "cache" / "teachers").exists()  # nothing was trained


def test_bad_diffusion_input_is_one_line_from_the_cli(tmp_path):
    proc = run_kdrun([*TINY, "logger=none", "student=denoiser_small",
                      f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and "use student=denoiser_tiny" in errors[0]
    assert "Traceback" not in proc.stderr


def test_eval_every_skips_fd_between_evaluations_but_never_the_last_epoch():
    from kdrun.tasks.diffusion import DIFFUSION

    model = create_model("denoiser_tiny", num_classes=10, in_chans=1)
    objective = DiffusionObjective(model, None, steps=2, epochs=5, eval_every=2)
    skipped = []
    for epoch in range(5):
        objective.set_epoch(epoch)
        skipped.append(objective.predictor().skip)
    assert skipped == [True, False, True, False, False]
    objective.set_epoch(0)

    class Split:  # scoring must not be reached on a skipped epoch
        def fd(self, images):
            raise AssertionError("sampled on a skipped epoch")

        def noise(self):
            raise AssertionError("sampled on a skipped epoch")

    assert DIFFUSION.evaluate(objective.predictor(), Split(), torch.device("cpu")) == {"fd": math.inf}


def test_the_diffusion_recipes_compose(compose_cfg):
    from kdrun.tasks.diffusion import _shapes

    cpu = compose_cfg(["experiment=diffusion_digits"])
    assert (cpu.task.name, cpu.teacher.name, cpu.task.teacher_steps, cpu.trainer.threads) == (
        "diffusion", "denoiser_tiny", 8, 1)
    gpu = compose_cfg(["experiment=diffusion_gpu", "data.root=/data/cifar10"])
    assert (gpu.data.name, gpu.teacher.name, gpu.task.teacher_steps, gpu.task.rounds) == (
        "cifar10", "denoiser_cifar", 1024, 10)
    assert gpu.task.teacher_steps % 2 ** gpu.task.rounds == 0
    assert (gpu.teacher.kwargs.dropout, gpu.student.kwargs.dropout) == (0.2, 0.0)
    shapes = _shapes(gpu.student)  # dropout differs, the architecture does not
    assert shapes == _shapes(gpu.teacher)
    assert sum(math.prod(s) for s in shapes.values()) == 49505283

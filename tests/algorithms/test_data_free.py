"""data_free: the student's training reads no dataset sample, only images synthesised from
the teacher (DAFL, DFAD generators; DeepInversion from BatchNorm statistics)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.algorithms.deep_inversion import BatchNormStatistics, invert_batch
from kdrun.config.errors import ConfigError
from kdrun.engine import cell as cell_module
from kdrun.engine.cell import run_cell
from kdrun.engine.teachers import obtain_teacher
from kdrun.models import create_model
from kdrun.tasks import task_for
from kdrun.tracking.tracker import Tracker

SMALL = ["algorithm=data_free", "algorithm.steps_per_epoch=3", "algorithm.batch_size=16",
         "algorithm.inversion_samples=24", "algorithm.inversion_batch=12",
         "algorithm.inversion_iters=4", "algorithm.reference=false"]


class ForbiddenLoader:
    """Stands in for the training split: any read of a sample is recorded and fails."""

    def __init__(self, loader, reads: list):
        self.num_samples, self.reads = loader.num_samples, reads

    def _touched(self, what):
        self.reads.append(what)
        raise AssertionError(f"data-free training read the training split ({what})")

    def set_epoch(self, epoch):  # no sample is read
        pass

    def __iter__(self):
        self._touched("__iter__")

    def __len__(self):
        self._touched("__len__")

    def view_batches(self, *args, **kwargs):
        self._touched("view_batches")

    @property
    def images(self):
        self._touched("images")


def guard_training_data(monkeypatch) -> list:
    """Cells run after this get data whose train / train_plain splits cannot be read;
    returns the list of attempted reads."""
    reads: list = []
    build = cell_module._build_data

    def guarded(cfg, task):
        data = build(cfg, task)
        data.train = ForbiddenLoader(data.train, reads)
        data.train_plain = ForbiddenLoader(data.train_plain, reads)
        return data

    monkeypatch.setattr(cell_module, "_build_data", guarded)
    return reads


def cache_teacher(cfg) -> None:
    """The premise of data-free KD: the teacher was trained (on data) before."""
    data = cell_module._build_data(cfg, task_for(cfg.task))
    obtain_teacher(cfg.teacher, cfg.data, data, cfg.seed, cfg.paths.cache_dir,
                   torch.device("cpu"), progress=False)


@pytest.mark.parametrize("method", ["dafl", "dfad", "deepinversion"])
def test_student_training_reads_no_training_sample(method, compose_cfg, tmp_path, monkeypatch):
    overrides = [*TINY, *SMALL, f"algorithm.method={method}", "algorithm.student_steps=2"]
    cfg = compose_cfg(overrides)
    cache_teacher(cfg)
    reads = guard_training_data(monkeypatch)
    result = run_cell(cfg, tmp_path / "cell", overrides)

    assert reads == [] and result["status"] == "completed"
    assert result["teacher_source"] == "cache" and result["data_free_method"] == method
    assert 0 <= result["student_top1"] <= 100 and 0 <= result["teacher_agreement"] <= 100
    lines = [json.loads(x) for x in (tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and "loss/kd" in lines[0]
    if method == "deepinversion":
        assert result["synthetic_samples"] == 24
        assert len(list((tmp_path / "cell" / "checkpoints" / "inversion").glob("batch*.pt"))) == 2
    else:  # the generator is trained and logged; the student saw epochs x steps x batch images
        assert result["synthetic_samples"] == 2 * 3 * 16 and result["generator_params"] > 0
        generator_terms = {"dafl": {"gen/oh", "gen/ie", "gen/a"}, "dfad": {"gen/adv"}}[method]
        assert generator_terms <= set(lines[-1])


def test_the_guard_catches_a_run_that_reads_data(compose_cfg, tmp_path, monkeypatch):
    reads = guard_training_data(monkeypatch)
    overrides = [*TINY, "loss=ce"]  # vanilla training reads the training split
    with pytest.raises(AssertionError, match="read the training split"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert reads


def test_inversion_moves_batch_statistics_towards_the_teachers_batchnorm():
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_chans=1)
    teacher.train()
    with torch.no_grad():  # give the BatchNorm layers non-trivial running statistics
        for _ in range(20):
            teacher(0.5 + 2.0 * torch.rand(32, 1, 32, 32))
    teacher.eval().requires_grad_(False)

    def distance(x):
        stats = BatchNormStatistics(teacher)
        with torch.no_grad():
            teacher(x)
        value = stats.take().item()
        stats.close()
        return value

    cfg = type("Cfg", (), dict(inversion_iters=30, inversion_lr=0.1, bn_weight=10.0, tv_weight=0.0,
                               l2_weight=0.0, inversion_jitter=1))
    noise = torch.randn((16, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    images = invert_batch(teacher, torch.arange(16) % 10, (1, 32, 32), cfg,
                          torch.Generator().manual_seed(3), torch.device("cpu"))
    assert distance(images) < 0.5 * distance(noise)


def test_generator_state_resumes_exactly(compose_cfg, tmp_path, monkeypatch):
    overrides = [*TINY, *SMALL, "algorithm.method=dfad", "algorithm.student_steps=2"]
    straight = run_cell(compose_cfg(overrides), tmp_path / "straight", overrides)
    original, armed = Tracker.log_epoch, [True]

    def log_epoch(self, record):  # die right after the epoch-1 checkpoint
        if armed[0] and record.get("epoch") == 2:
            armed[0] = False
            raise KeyboardInterrupt("simulated kill")
        return original(self, record)

    monkeypatch.setattr(Tracker, "log_epoch", log_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_cell(compose_cfg(overrides), tmp_path / "resumed", overrides)
    resumed = run_cell(compose_cfg(overrides), tmp_path / "resumed", overrides)
    assert resumed["resumed_from"] == 1
    for key in ("student_top1", "val_top1", "teacher_agreement"):
        assert resumed[key] == straight[key], key
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert last["model"]["steps_done"] == 6 and last["model"]["_extra_state"]["g_optim"]["state"]


@pytest.mark.slow
def test_reference_student_trained_with_data(compose_cfg, tmp_path):
    overrides = [*TINY, *SMALL[:-1], "algorithm.reference=true"]
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["gap_top1"] == pytest.approx(result["with_data_top1"] - result["student_top1"])
    assert (tmp_path / "cell" / "metrics.with_data.jsonl").is_file()


@pytest.mark.parametrize("override,key", [("algorithm.method=gan", "algorithm.method"),
                                          ("loss=ce", "loss=kd"),
                                          ("algorithm.inversion_iters=0", "algorithm.inversion_iters")])
def test_bad_config_fails_before_training(override, key, compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=data_free", override]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cache" / "teachers").exists()

"""task=segmentation end to end on tiny seg_digits: metrics against hand-computed values, the
canvases and their splits, a default cell writing result.json (W&B offline), a sweep sharing
one teacher with kdrun-table, kill -9 and resume, and one-line refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import epoch_checkpointed, kill_then_rerun, metrics_lines, run_kdrun
from omegaconf import OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.data.seg_config import SegDataConfig
from kdrun.data.seg_digits import build_seg_digits
from kdrun.engine.cell import run_cell
from kdrun.models.output import ModelOutput
from kdrun.tasks import task_for

SEG = task_for("segmentation")
METRICS = ("student_miou", "best_student_miou", "val_miou", "teacher_miou",
           "student_pixel_acc", "best_student_pixel_acc", "val_pixel_acc", "teacher_pixel_acc")


def tiny(*extra):
    return ["task=segmentation", "data.max_train=64", "data.max_val=32", "data.max_test=32",
            "trainer.epochs=2", "teacher.train.epochs=1", "trainer.threads=1", "logger=none",
            "trainer.progress=false", *extra]


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return ModelOutput(self.logits, [], self.logits)


def one_hot_logits(pred, classes):
    return torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float()


def test_miou_and_pixel_accuracy_by_hand():
    y = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, IGNORE_INDEX]]])        # 7 scored pixels
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 0, 2]]])
    # class 0: tp 2, fp 1 (pixel 6), fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 2/3; class 2: 1/2
    # class 3: absent from labels and predictions -> left out of the mean
    scores = SEG.evaluate(Fixed(one_hot_logits(pred, 4)), [Batch(torch.zeros(1, 1, 2, 4), y,
                                                                  torch.tensor([0]))],
                          torch.device("cpu"))
    assert scores["miou"] == pytest.approx(100 * (2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert scores["pixel_acc"] == pytest.approx(100 * 5 / 7)
    sums = SEG.train_sums(one_hot_logits(pred, 4), Batch(torch.zeros(1), y, torch.tensor([0])))
    assert SEG.train_value(sums.tolist(), 7) == pytest.approx(scores["miou"])
    assert SEG.count(Batch(torch.zeros(1), y, torch.tensor([0]))) == 7
    assert SEG.label_loss(torch.zeros(1, 4, 2, 4), Batch(None, y, None)).item() == \
        pytest.approx(math.log(4))


def test_seg_digits_canvases_masks_and_splits():
    cfg = OmegaConf.structured(SegDataConfig(max_train=40, max_val=10, max_test=20))
    a, b = build_seg_digits(cfg, 0), build_seg_digits(cfg, 1)
    assert a.split_sizes == {"train": 40, "val": 10, "test": 20} and a.num_classes == 11
    batch = next(iter(a.train))
    assert batch.x.shape == (32, 1, 32, 32) and batch.y.shape == (32, 32, 32)
    assert batch.y.dtype == torch.int64 and set(batch.y.unique().tolist()) <= set(range(11))
    assert torch.equal(a.test.labels, b.test.labels)             # test: the same for every seed
    assert not torch.equal(a.train.labels, b.train.labels)       # train: drawn with the seed
    again = build_seg_digits(cfg, 0)
    assert torch.equal(again.train.images, a.train.images) and torch.equal(again.val.labels, a.val.labels)
    raw = a.test.images * a.std[0] + a.mean[0]                   # undo the normalisation
    digit = a.test.labels > 0
    assert (raw[:, 0][digit] > cfg.threshold - 1e-5).all()       # labelled pixels are bright
    assert (a.test.labels > 0).float().mean() > 0.05             # and there are some
    with pytest.raises(ConfigError, match="data.max_digit_size=40 does not fit"):
        build_seg_digits(OmegaConf.structured(SegDataConfig(max_digit_size=40)), 0)


def test_task_segmentation_composes_its_data_models_and_loss(compose_cfg):
    cfg = compose_cfg(["task=segmentation"])
    assert (cfg.task.name, cfg.data.name, cfg.teacher.name, cfg.student.name) == (
        "segmentation", "seg_digits", "unet_seg", "unet_seg_small")
    assert list(cfg.loss) == ["pixel_kd"] and cfg.loss.pixel_kd.temperature == 1.0
    assert compose_cfg(["task=segmentation", "loss=aicsd"]).loss.aicsd.epochs is None  # trainer's


@pytest.mark.parametrize("loss", ["ifvd", "aicsd", "[pixel_kd,cwd]"])
def test_each_segmentation_loss_trains_a_cell(compose_cfg, tmp_path, loss):
    overrides = tiny(f"loss={loss}", "trainer.epochs=1", "data.max_train=32")
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and math.isfinite(result["student_miou"])
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text())
    expected = {"ifvd": {"loss/ifvd", "loss/ce"}, "aicsd": {"loss/aicsd_ce", "loss/aicsd_ics",
                                                            "loss/aicsd_kd"},
                "[pixel_kd,cwd]": {"loss/pixel_kd", "loss/cwd", "loss/ce"}}[loss]
    assert expected <= set(line), line
    assert loss != "aicsd" or "loss/ce" not in line  # ALW weighs the cross-entropy itself


def test_kdrun_task_segmentation_writes_its_metrics_and_wandb_offline(tmp_path):
    cell = tmp_path / "cell"
    run_kdrun([*tiny("logger=wandb"), f"paths.output_dir={tmp_path}", f"hydra.run.dir={cell}"],
              cwd=tmp_path, check=True)
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["task"] == "segmentation"
    for key in METRICS:
        assert 0 < result[key] <= 100, key
    assert result["teacher_source"] == "trained" and result["loss"] == ["pixel_kd"]
    assert result["num_classes"] == 11 and result["test_canvases"] == 32
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all("train_miou" in x for x in lines)
    best = max(lines, key=lambda x: x["val_miou"])
    assert result["val_miou"] == best["val_miou"] and result["best_student_miou"] == best["test_miou"]
    assert list(cell.glob("wandb/offline-run-*/run-*.wandb"))


def test_a_sweep_trains_the_teacher_once_and_kdrun_table_reads_miou(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_kdrun(["-m", *tiny("trainer.epochs=1"), "loss=ce,pixel_kd,cwd",
                      f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"],
                     cwd=tmp_path, check=True)
    cells = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(cells) == 3 and all(c["status"] == "completed" for c in cells)
    assert sorted(str(c["teacher_source"]) for c in cells) == ["None", "cache", "trained"]
    assert (proc.stdout + proc.stderr).count("training teacher unet_seg") == 1
    from kdrun.report.cli import parse_args, run

    assert run(parse_args([str(sweep), "--rows", "loss", "--cols", "student", "--no-plots"])) == 0
    table = (sweep / "table.md").read_text()
    assert "best_student_miou" in table and "pixel_kd" in table


def test_kill_and_resume_a_segmentation_cell_equals_uninterrupted(tmp_path, compose_cfg):
    common = tiny("trainer.epochs=3", "loss=ifvd")
    straight = tmp_path / "straight"  # in this process: the same single thread as the CLI's
    run_cell(compose_cfg(common), straight, common)
    cli = [*common, f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    killed = tmp_path / "killed"
    kill_then_rerun([*cli, f"hydra.run.dir={killed}"], tmp_path, epoch_checkpointed(killed))
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1 and b["teacher_source"] == "cache"
    for key in METRICS:
        assert a[key] == b[key], key

    assert metrics_lines(straight) == metrics_lines(killed)


@pytest.mark.parametrize("extra, message", [
    (["data=digits"], "task=segmentation needs segmentation data, not data=digits: use data=seg_digits"),
    (["data.threshold=1.5"], "data.threshold=1.5"),
])
def test_bad_segmentation_input_is_one_line(tmp_path, extra, message):
    proc = run_kdrun([*tiny(*extra), f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("extra, message", [
    (["student=resnet8"], "student=resnet8 is an image model but task=segmentation trains a "
                          "segmentation model"),
    (["loss=kd"], "loss=kd is written for task="),
    (["data.max_digit_size=40"], "data.max_digit_size=40 does not fit the 32-pixel canvas"),
    (["loss=cwd", "loss.cwd.feature=9"], "loss.cwd.feature=[9]: stage 9 does not exist"),
    (["scheme=online"], "task=segmentation runs scheme=offline algorithm=vanilla"),
    (["data=cityscapes"], "data=cityscapes needs data.root="),
])
def test_bad_segmentation_config_fails_before_training_naming_the_key(compose_cfg, tmp_path,
                                                                      extra, message):
    """The same ConfigError the CLI prints as its one line (two cases above go through it)."""
    overrides = tiny(*extra)
    with pytest.raises(ConfigError) as error:
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "cell" / "checkpoints").exists()  # nothing trained


def test_the_segmentation_recipes_compose(compose_cfg):
    cpu = compose_cfg(["experiment=seg_digits"])
    assert (cpu.task.name, cpu.data.name, cpu.trainer.epochs) == ("segmentation", "seg_digits", 20)
    gpu = compose_cfg(["experiment=seg_gpu"])
    assert (gpu.task.name, gpu.trainer.device, gpu.loss.cwd.temperature) == ("segmentation", "cuda", 4.0)


def fake_cityscapes(root, train=4, val=2, size=(32, 64)):
    """The official folder layout with tiny random images and label-id masks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            stem = f"city_{i:06d}_000019"
            for folder, name, array in (
                    ("leftImg8bit", f"{stem}_leftImg8bit.png",
                     rng.integers(0, 256, (*size, 3), dtype=np.uint8)),
                    ("gtFine", f"{stem}_gtFine_labelIds.png",
                     rng.choice([0, 7, 8, 26], size).astype(np.uint8))):  # unlabeled, road, sidewalk, car
                path = root / folder / split / "city"
                path.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path / name)
    return root


def test_cityscapes_reads_the_official_layout_and_maps_train_ids(tmp_path):
    from kdrun.data.seg_cityscapes import build_cityscapes

    root = fake_cityscapes(tmp_path / "cityscapes")
    cfg = OmegaConf.structured(SegDataConfig(name="cityscapes", root=str(root), batch_size=2,
                                             crop_size=[16, 24], val_fraction=0.25))
    data = build_cityscapes(cfg, 0)
    assert data.split_sizes == {"train": 3, "val": 1, "test": 2} and data.num_classes == 19
    assert data.input_shape == (3, 16, 24) and data.classes[:2] == ("road", "sidewalk")
    batch = next(iter(data.train))
    assert batch.x.shape == (2, 3, 16, 24) and batch.y.shape == (2, 16, 24)
    assert set(batch.y.unique().tolist()) <= {IGNORE_INDEX, 0, 1, 13}  # unlabeled -> ignored
    data.train.set_epoch(1)
    again = build_cityscapes(cfg, 0)
    again.train.set_epoch(1)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y)          # seeded per epoch
               for a, b in zip(data.train, again.train))
    whole = next(iter(data.test))
    assert whole.x.shape == (2, 3, 32, 64)                               # eval: whole images
    data.test.shard(1, 2)                                                # torchrun: rank 1 of 2
    assert [b.index.tolist() for b in data.test] == [[1]]
    with pytest.raises(ConfigError, match="data.root=.*no Cityscapes train split"):
        build_cityscapes(OmegaConf.structured(SegDataConfig(name="cityscapes",
                                                            root=str(tmp_path / "none"))), 0)


def test_deeplab_models_split_their_head_for_the_losses():
    from kdrun.models.registry import create_model, model_kind

    torch.manual_seed(0)
    model = create_model("deeplabv3_mobilenet_seg", num_classes=19, in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.logits.shape == (1, 19, 64, 96) and out.features[-1].shape[1] == 256
    assert model_kind("deeplabv3_resnet101_seg") == "segmentation"

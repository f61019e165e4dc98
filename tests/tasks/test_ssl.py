"""task=ssl end to end on a few digits: probes against hand-computed values, views that replay
exactly, result keys, a sweep sharing one DINO-trained teacher, kill -9 and resume, W&B
offline files, and one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import epoch_checkpointed, kill_then_rerun, metrics_lines, run_kdrun
from omegaconf import OmegaConf

from kdrun.data.batch import Batch
from kdrun.data.seeds import torch_generator
from kdrun.data.ssl_config import MultiCropConfig, SSLDataConfig
from kdrun.data.ssl_data import build_ssl_data
from kdrun.data.ssl_views import jitter, multi_crop
from kdrun.models.output import ModelOutput
from kdrun.tasks import task_for
from kdrun.tasks.ssl_probes import fit_linear_probe, knn_top1, linear_top1

SSL = task_for("ssl")
KEYS = ("student_knn", "best_student_knn", "val_knn", "student_linear", "best_student_linear",
        "val_linear")


def tiny(*extra, views=("data.views.local_crops=2",)):
    return ["task=ssl", "data.max_train=64", "data.max_val=32", "data.max_test=32",
            "data.batch_size=32", *views, "trainer.epochs=2",
            "teacher=resnet8", "teacher.train.epochs=1",
            "logger=none", "trainer.progress=false", "trainer.threads=1", *extra]


def test_knn_votes_by_weighted_cosine_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    queries = torch.tensor([[1.0, 0.05], [0.1, 1.0]])
    assert knn_top1(bank, labels, queries, torch.tensor([0, 1]), k=1) == 100.0
    # k=3: every bank row votes exp(cos / T); two close class-0 rows outvote one class-1 row
    # only when T is large (weights nearly equal), while a small T lets the nearest win
    query = torch.tensor([[0.6, 0.8]])
    sims = torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(query, dim=1).t()
    class0 = sims[:2].div(10.0).exp().sum()
    assert class0 > sims[2].div(10.0).exp()  # by hand: T=10 -> class 0
    assert knn_top1(bank, labels, query, torch.tensor([0]), k=3, temperature=10.0) == 100.0
    assert knn_top1(bank, labels, query, torch.tensor([1]), k=3, temperature=0.01) == 100.0


def test_linear_probe_separates_separable_embeddings():
    torch.manual_seed(0)
    labels = torch.arange(40) % 4
    bank = torch.nn.functional.one_hot(labels, 4).double() * 5 + 0.1 * torch.randn(40, 4).double()
    probe = fit_linear_probe(bank, labels)
    assert linear_top1(probe, bank[:8], labels[:8]) == 100.0
    assert linear_top1(probe, bank[:8], (labels[:8] + 1) % 4) == 0.0


def test_views_are_a_pure_function_of_the_generator_and_replay_per_epoch():
    x = torch.randn(5, 1, 32, 32)
    views = MultiCropConfig(local_crops=3)
    a = multi_crop(x, views, torch_generator(0, "v"))
    b = multi_crop(x, views, torch_generator(0, "v"))
    assert len(a) == 5 and all(torch.equal(p, q) for p, q in zip(a, b))
    assert [c.shape[-1] for c in a] == [32, 32, 16, 16, 16]
    flat = torch.full((2, 1, 32, 32), 0.3)  # a crop of a flat image stays flat without jitter
    still = multi_crop(flat, MultiCropConfig(contrast=0.0, brightness=0.0), torch_generator(1, "v"))
    assert all(torch.allclose(c, flat[:, :, :c.shape[-2], :c.shape[-1]]) for c in still)
    assert torch.equal(jitter(x, 0.0, 0.0, torch_generator(0, "j")), x)
    data = build_ssl_data(OmegaConf.structured(SSLDataConfig(max_train=64, batch_size=32)), 0)
    data.train.set_epoch(3)
    first = [b.crops for b in data.train]
    data.train.set_epoch(3)
    again = [b.crops for b in data.train]
    assert all(torch.equal(p, q) for r, s in zip(first, again) for p, q in zip(r, s))
    assert data.val.bank is data.train_plain and data.test.bank is data.train_plain


def test_default_task_ssl_composes_dino_on_resnet8(compose_cfg):
    cfg = compose_cfg(["task=ssl"])
    assert (cfg.task.name, cfg.data.name, list(cfg.loss)) == ("ssl", "digits", ["dino"])
    assert (cfg.student.name, cfg.teacher.name, cfg.data.augment) == ("resnet8", "resnet32", False)
    assert cfg.data.views.global_crops == 2 and cfg.data.views.local_crops >= 2
    seed = compose_cfg(["task=ssl", "loss=seed"])
    assert list(seed.loss) == ["seed"] and seed.teacher.train.epochs > 0


def test_a_tiny_ssl_cell_writes_its_metrics_and_wandb_files(tmp_path):
    cell = tmp_path / "cell"
    run_kdrun([*tiny("logger=wandb"), f"paths.output_dir={tmp_path}", f"hydra.run.dir={cell}"],
              cwd=tmp_path, check=True)
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["task"] == "ssl"
    assert all(0 <= result[k] <= 100 for k in KEYS), result
    assert result["teacher_knn"] is None and result["teacher_source"] is None  # dino: no teacher
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all({"loss/dino", "train_agree", "val_knn", "test_linear"} <= set(line) for line in lines)
    best = max(lines, key=lambda line: line["val_knn"])  # earliest on ties
    assert result["val_knn"] == best["val_knn"] and result["best_student_knn"] == best["test_knn"]
    assert list(cell.glob("**/wandb/offline-run-*"))


def test_a_seed_sweep_trains_the_dino_teacher_once(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *tiny("loss=seed", "loss.seed.queue_size=32", "trainer.epochs=1"), "loss.seed.student_temperature=0.1,0.2",
            f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    proc = run_kdrun(args, cwd=tmp_path, check=True)
    cells = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(cells) == 2 and all(c["status"] == "completed" for c in cells)
    assert sorted(c["teacher_source"] for c in cells) == ["cache", "trained"]
    assert all(c["teacher_knn"] is not None for c in cells)
    assert (proc.stdout + proc.stderr).count("training teacher resnet8") == 1
    from kdrun.report.cli import parse_args, run  # kdrun-table picks best_student_knn itself

    assert run(parse_args([str(sweep), "--no-plots"])) == 0
    assert "best_student_knn" in (sweep / "table.md").read_text()


def test_kill_and_resume_an_ssl_cell_equals_uninterrupted(tmp_path):
    common = [*tiny("trainer.epochs=3"), f"paths.output_dir={tmp_path}"]
    straight = tmp_path / "straight"
    run_kdrun([*common, f"hydra.run.dir={straight}"], cwd=tmp_path, check=True)
    killed = tmp_path / "killed"
    kill_then_rerun([*common, f"hydra.run.dir={killed}"], tmp_path, epoch_checkpointed(killed))
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1
    for key in KEYS:
        assert a[key] == b[key], key

    assert metrics_lines(straight) == metrics_lines(killed)


BAD = [
    (["data=digits"], "task=ssl needs image data with multi-crop views, not data=digits"),
    (["loss=at"], "loss=at is written for task=classification, not task=ssl"),
    (["data.augment=true"], "data.augment=true: task=ssl shows training images only through"),
    (["data.views.local_min_scale=0.5"], "data.views.local_min_scale=0.5 is above"),
    (["data.views.global_crops=1", "data.views.local_crops=0"], "loss=dino compares two views"),
    (["loss=seed", "loss.seed.queue_size=500"], "loss.seed.queue_size=500 is larger than the 64"),
    (["data.views.contrast=1.5"], "data.views.contrast=1.5 must be within [0, 1)"),
    (["scheme=online"], "task=ssl runs scheme=offline algorithm=vanilla"),
    (["student=lm_tiny"], "student=lm_tiny is a language model but task=ssl trains an image"),
]


def bad_overrides(extra):
    return tiny(*extra, views=() if "data=digits" in extra else ("data.views.local_crops=2",))


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_ssl_input_fails_before_training_naming_the_key(compose_cfg, tmp_path, extra, message):
    from kdrun.config.errors import ConfigError
    from kdrun.engine.cell import run_cell

    overrides = bad_overrides(extra)
    with pytest.raises(ConfigError) as err:
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cell" / "checkpoints").exists()
    assert not (tmp_path / "cache" / "teachers").exists()  # nothing trained


@pytest.mark.parametrize("extra, message", [BAD[2], BAD[5]])
def test_bad_ssl_input_is_one_line_on_the_cli(tmp_path, extra, message):
    proc = run_kdrun([*bad_overrides(extra), f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_ssl_losses_refuse_classification(compose_cfg, tmp_path):
    from helpers import TINY

    from kdrun.config.errors import ConfigError
    from kdrun.engine.cell import run_cell

    overrides = [*TINY, "loss=dino"]
    with pytest.raises(ConfigError, match="loss=dino is written for task=ssl, not task=classification"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)


def test_objective_runs_the_student_on_every_crop_and_the_teacher_on_globals():
    from kdrun.data.ssl_data import ViewBatch
    from kdrun.losses.relation.seed import SEED, SEEDConfig
    from kdrun.tasks.ssl_objective import SSLObjective

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 3)

        def forward(self, x):
            seen.append(tuple(x.shape))
            return ModelOutput(torch.zeros(x.shape[0], 1), [], self.w(x.mean((1, 2, 3))[:, None]))

    teacher_calls = []

    def teacher(batch: Batch):
        teacher_calls.append(tuple(batch.x.shape))
        return ModelOutput(torch.zeros(1), [], torch.randn(batch.x.shape[0], 2))

    probe = ModelOutput(torch.zeros(1, 1), [], torch.zeros(1, 3))
    seed = SEED(SEEDConfig(queue_size=8), probe, ModelOutput(torch.zeros(1, 1), [], torch.zeros(1, 2)))
    objective = SSLObjective(Recorder(), torch.nn.ModuleDict({"seed": seed}), teacher).train()
    crops = (torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32), torch.randn(4, 1, 16, 16))
    batch = ViewBatch(torch.randn(4, 1, 32, 32), torch.zeros(4, dtype=torch.long), torch.arange(4),
                      None, crops, 2)
    terms, agree = objective(batch)
    assert set(terms) == {"seed"} and agree.shape == (4,)
    assert seen == [(8, 1, 32, 32)]  # seed uses global crops only: no local forward
    assert teacher_calls == [(8, 1, 32, 32)] and objective.ema is None
    assert [p for p in objective.trainable_parameters()] == [*objective.student.parameters(),
                                                             *seed.head.parameters()]
    assert SSL.train_value([3.0], 4) == 75.0

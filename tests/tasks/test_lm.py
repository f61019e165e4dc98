"""task=lm end to end on a tiny text file with the byte tokenizer (runs on any machine):
metrics against hand-computed values, result keys, the top-k cache, GKD's on-policy batches,
sequence-level KD's teacher targets, gradient accumulation, and one-line refusals."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from helpers import epoch_checkpointed, kill_then_rerun, metrics_lines, run_kdrun

from kdrun.cache.token_outputs import dense_logprobs
from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.engine.cell import run_cell
from kdrun.engine.token_objective import student_rollout
from kdrun.losses.tokens import token_kl, topk_targets
from kdrun.models.output import ModelOutput
from kdrun.tasks import task_for

LM = task_for("lm")


def write_corpus(path, paragraphs=300, seed=0):
    rng = random.Random(seed)
    subjects, verbs = ["the cat", "a dog", "my aunt", "the vicar"], ["sat", "ran", "spoke", "slept"]
    text = "\n\n".join(" ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} at noon."
                                for _ in range(6)) for _ in range(paragraphs))
    path.write_text(text)
    return path


def tiny(tmp_path, *extra):
    corpus = write_corpus(tmp_path / "corpus.txt")
    return ["task=lm", "data=text", f"data.path={corpus}", "data.tokenizer=bytes",
            "data.seq_len=32", "data.max_train=48", "data.max_val=16", "data.max_test=16",
            "teacher=lm_tiny", "student=lm_tiny", "teacher.train.epochs=1",
            "teacher.train.optim.name=adamw", "teacher.train.optim.lr=0.003", "optim.lr=0.003",
            "trainer.epochs=2", "logger=none", "trainer.progress=false", "task.sample_tokens=8",
            *extra]


class Fixed(torch.nn.Module):
    """A predictor with given logits for every batch (for hand-computed metrics)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return ModelOutput(self.logits, [], self.logits)


def test_perplexity_and_token_accuracy_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))  # B=1, T=2, V=3
    y = torch.tensor([[0, 2]])
    scores = LM.evaluate(Fixed(logits), [Batch(torch.zeros(1, 2, dtype=torch.long), y,
                                               torch.tensor([0]))], torch.device("cpu"))
    assert scores["ppl"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.1)) / 2))
    assert scores["token_acc"] == pytest.approx(50.0)
    masked = torch.tensor([[0, IGNORE_INDEX]])  # an unscored token changes nothing
    scores = LM.evaluate(Fixed(logits), [Batch(torch.zeros(1, 2, dtype=torch.long), masked,
                                               torch.tensor([0]))], torch.device("cpu"))
    assert scores["ppl"] == pytest.approx(2.0) and scores["token_acc"] == pytest.approx(100.0)
    uniform = torch.zeros(2, 5, 7)
    batch = Batch(torch.zeros(2, 5, dtype=torch.long), torch.randint(0, 7, (2, 5)), torch.arange(2))
    assert LM.evaluate(Fixed(uniform), [batch], torch.device("cpu"))["ppl"] == pytest.approx(7.0)
    assert LM.label_loss(uniform, batch).item() == pytest.approx(math.log(7))
    assert LM.count(Batch(batch.x, masked.expand(2, 2), batch.index)) == 2


def test_topk_cache_keeps_the_top_tokens_exact_and_spreads_the_rest():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 11) * 3
    values, indices, rest = topk_targets(logits, 4)
    dense = dense_logprobs(values, indices, rest, 11)
    assert torch.allclose(dense.logsumexp(-1), torch.zeros(2, 3), atol=1e-5)  # still sums to 1
    exact = logits.log_softmax(-1)
    assert torch.allclose(dense.gather(-1, indices), exact.gather(-1, indices), atol=1e-6)
    outside = dense.scatter(-1, indices, float("nan"))
    spread = outside[~outside.isnan()].view(2, 3, 7)
    assert torch.allclose(spread, spread[..., :1].expand_as(spread))  # evenly over the other 7
    full = dense_logprobs(*topk_targets(logits, 11), 11)  # k = V: the teacher itself
    student = torch.randn(2, 3, 11)
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert token_kl(student, full, mask).item() == pytest.approx(
        token_kl(student, logits, mask).item(), rel=1e-5)


def test_default_task_lm_composes_austen_smollm2_and_a_tiny_student(compose_cfg):
    cfg = compose_cfg(["task=lm"])
    assert (cfg.task.name, cfg.data.name, cfg.data.tokenizer) == ("lm", "austen", "smollm2")
    assert (cfg.teacher.name, cfg.teacher.pretrained, cfg.teacher.train.epochs) == ("smollm2", True, 0)
    assert (cfg.student.name, cfg.optim.name) == ("lm_tiny", "adamw")
    image = compose_cfg([])
    assert (image.task.name, image.data.name, image.teacher.name) == ("classification", "digits",
                                                                       "resnet32")


def test_a_tiny_lm_cell_writes_its_metrics(compose_cfg, tmp_path):
    overrides = tiny(tmp_path)
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["task"] == "lm"
    for key in ("student_ppl", "best_student_ppl", "val_ppl", "teacher_ppl", "student_token_acc",
                "teacher_token_acc", "tokens_per_s", "student_params"):
        assert result[key] is not None and result[key] > 0, key
    assert result["teacher_cache"] is True and result["teacher_source"] == "trained"
    assert result["train_tokens"] == 48 * 32
    lines = [json.loads(x) for x in (tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(isinstance(line["sample"], str) and "val_ppl" in line for line in lines)
    best = min(lines, key=lambda line: line["val_ppl"])
    assert result["best_epoch"] == best["epoch"] and result["val_ppl"] == best["val_ppl"]
    saved = json.loads((tmp_path / "cell" / "result.json").read_text())
    assert saved["student_ppl"] == result["student_ppl"]


def test_cached_top_k_equals_the_live_teacher_at_k_equal_vocab(compose_cfg, tmp_path):
    common = tiny(tmp_path, "trainer.epochs=1", "task.cache_topk=257", "loss.kd.temperature=1")
    cached = run_cell(compose_cfg(common), tmp_path / "cached", common)
    live = run_cell(compose_cfg([*common, "teacher.cache=off"]), tmp_path / "live",
                    [*common, "teacher.cache=off"])
    assert cached["teacher_cache"] is True and live["teacher_cache"] is False
    # fp16 storage of the log-probabilities is the only difference
    assert cached["student_ppl"] == pytest.approx(live["student_ppl"], rel=2e-3)


def test_on_policy_rollout_keeps_the_prompt_and_scores_only_sampled_tokens():
    from kdrun.models.registry import create_model

    torch.manual_seed(0)
    student = create_model("lm_tiny", num_classes=257)
    x = torch.randint(0, 257, (3, 10))
    batch = Batch(x, torch.roll(x, -1, 1), torch.arange(3))
    torch.manual_seed(1)
    rolled = student_rollout(student, batch, prompt_tokens=4, temperature=1.0)
    assert rolled.x.shape == (3, 10) and torch.equal(rolled.x[:, :4], x[:, :4])
    assert (rolled.y[:, :3] == IGNORE_INDEX).all() and (rolled.y[:, 3:] != IGNORE_INDEX).all()
    assert torch.equal(rolled.y[:, 3:-1], rolled.x[:, 4:])  # targets are the next sampled token
    assert student.training  # the rollout gives the student back in train mode


@pytest.mark.parametrize("loss", ["gkd", "seqkd", "[kd,hidden,attention]"])
def test_lm_losses_run_in_a_cell(compose_cfg, tmp_path, loss):
    extra = ["trainer.epochs=1", f"loss={loss}"]
    if loss == "gkd":
        extra += ["loss.gkd.on_policy_fraction=1.0", "loss.gkd.prompt_tokens=8"]
    overrides = tiny(tmp_path, *extra)
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and math.isfinite(result["student_ppl"])
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[0])
    expected = {"gkd": {"loss/gkd"}, "seqkd": {"loss/seqkd"},
                "[kd,hidden,attention]": {"loss/kd", "loss/hidden", "loss/attention", "loss/ce"}}
    assert expected[loss] <= set(line), line
    if loss == "seqkd":  # the teacher's continuations were generated once, and cached
        assert len(list((tmp_path / "outputs" / "cache" / "generations").glob("*/rows.npy"))) == 1 \
            or len(list(tmp_path.glob("**/generations/*/rows.npy"))) == 1


def test_seqkd_targets_are_the_teachers_greedy_continuations(compose_cfg, tmp_path):
    import numpy as np

    from kdrun.cache.generations import teacher_targets
    from kdrun.data.text import build_text_data
    from kdrun.models.registry import create_model

    cfg = compose_cfg(tiny(tmp_path))
    data = build_text_data(cfg.data, 0)
    torch.manual_seed(0)
    teacher = create_model("lm_tiny", num_classes=data.vocab_size).eval()
    targets = teacher_targets(teacher, "k" * 24, tmp_path / "cache", data.train, 0, 8, "greedy",
                              1.0, torch.device("cpu"))
    batch = next(iter(data.train_plain))
    served = targets.batch_for(batch)
    expected = teacher.generate(batch.x[:, :8], max_new_tokens=32 + 1 - 8, greedy=True)
    assert torch.equal(served.x, expected[:, :32])
    assert torch.equal(served.y[:, 7:], expected[:, 8:33]) and (served.y[:, :7] == IGNORE_INDEX).all()
    assert np.load(next((tmp_path / "cache" / "generations").glob("*/rows.npy"))).shape == (48, 33)


def test_gradient_accumulation_equals_one_large_batch(compose_cfg, tmp_path):
    common = tiny(tmp_path, "trainer.epochs=1", "loss=ce", "data.max_train=32")
    big = run_cell(compose_cfg([*common, "data.batch_size=8"]), tmp_path / "big", common)
    halves = [*common, "data.batch_size=4", "trainer.accumulate=2"]
    accumulated = run_cell(compose_cfg(halves), tmp_path / "halves", halves)
    assert accumulated["student_ppl"] == pytest.approx(big["student_ppl"], rel=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["student=lm_tinny"], "student=lm_tinny: no such option; available: "),
    (["student=hf", "student.path=/no/such/model"], "student.path=/no/such/model: no such model"),
    (["teacher=smollm2"], "smollm2 has a 49152-token vocabulary but the data's tokenizer has 257"),
    (["data.seq_len=600"], "data.seq_len=600 is longer than the 512-token context of student=lm_tiny"),
    (["student=resnet8"], "student=resnet8 is an image model but task=lm trains a language"),
    (["loss=at"], "loss=at is written for task=classification, not task=lm"),
    (["scheme=online"], "task=lm runs scheme=offline algorithm=vanilla"),
])
def test_bad_lm_input_is_one_line(tmp_path, extra, message):
    proc = run_kdrun([*tiny(tmp_path, *extra), f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_an_empty_corpus_file_is_one_line(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    args = [*tiny(tmp_path), f"data.path={tmp_path / 'empty.txt'}", f"paths.output_dir={tmp_path}/out"]
    proc = run_kdrun(args, cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and "data.path=" in errors[0] and "Traceback" not in proc.stderr


def test_image_losses_refuse_lm_and_lm_losses_refuse_images(tmp_path):
    from helpers import TINY

    proc = run_kdrun([*TINY, "loss=gkd", f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2 and "loss=gkd is written for task=lm, not task=classification" \
        in proc.stderr, proc.stderr[-2000:]


def test_a_four_cell_lm_sweep_runs_the_teacher_once(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *tiny(tmp_path, "trainer.epochs=1"), "loss.kd.temperature=1,2",
            "loss.kd.alpha=0.5,1.0", f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    proc = run_kdrun(args, cwd=tmp_path, check=True)
    cells = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(cells) == 4 and all(c["status"] == "completed" for c in cells)
    assert sorted(c["teacher_source"] for c in cells) == ["cache", "cache", "cache", "trained"]
    assert all(c["teacher_cache"] for c in cells)
    log = proc.stdout + proc.stderr
    assert log.count("training teacher lm_tiny") == 1
    assert log.count("caching the teacher's top-64 tokens") == 1  # one top-k fill for 4 cells
    assert len(list((tmp_path / "cache" / "token_outputs").glob("*/meta.json"))) == 1
    from kdrun.report.cli import parse_args, run  # kdrun-table picks the LM metric itself

    assert run(parse_args([str(sweep), "--no-plots"])) == 0
    assert "best_student_ppl" in (sweep / "table.md").read_text()


def test_kill_and_resume_an_lm_cell_equals_uninterrupted(tmp_path):
    common = [*tiny(tmp_path, "trainer.epochs=4", "data.max_train=96"),
              f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    straight = tmp_path / "straight"
    run_kdrun([*common, f"hydra.run.dir={straight}"], cwd=tmp_path, check=True)
    killed = tmp_path / "killed"
    kill_then_rerun([*common, f"hydra.run.dir={killed}"], tmp_path, epoch_checkpointed(killed))
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1
    for key in ("student_ppl", "best_student_ppl", "val_ppl", "teacher_ppl", "student_token_acc"):
        assert a[key] == b[key], key

    assert metrics_lines(straight) == metrics_lines(killed)  # the samples too: their RNG is their own


@pytest.mark.slow
def test_torchrun_two_processes_train_one_lm_cell(tmp_path):
    import subprocess
    import sys

    cell = tmp_path / "cell"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "kdrun", *tiny(tmp_path, "trainer.epochs=1", "trainer.threads=1"),
           f"paths.output_dir={tmp_path}", f"hydra.run.dir={cell}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((cell / "result.json").read_text())
    assert result["status"] == "completed" and result["world_size"] == 2
    assert math.isfinite(result["student_ppl"])


def test_wandb_offline_run_logs_the_lm_sample(compose_cfg, tmp_path):
    overrides = tiny(tmp_path, "trainer.epochs=1", "logger=wandb")
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed"
    assert list((tmp_path / "cell").glob("**/wandb/offline-run-*"))


def test_the_lm_recipes_compose(compose_cfg):
    cpu = compose_cfg(["experiment=lm_austen", "loss=lm/kd"])
    assert (cpu.task.name, cpu.data.max_train, cpu.trainer.epochs) == ("lm", 256, 10)
    assert (cpu.loss.kd.temperature, cpu.loss.kd.alpha) == (1.0, 0.5)
    gpu = compose_cfg(["experiment=lm_gpu", "data.path=/data/corpus.jsonl"])
    assert (gpu.teacher.name, gpu.teacher.path, gpu.teacher.pretrained) == (
        "hf", "HuggingFaceTB/SmolLM2-1.7B", True)
    assert (gpu.student.path, gpu.student.pretrained) == ("HuggingFaceTB/SmolLM2-135M", False)
    assert (gpu.trainer.amp, gpu.trainer.accumulate, gpu.teacher.cache) == ("bf16", 4, "off")


def test_bf16_autocast_trains_an_lm_cell(compose_cfg, tmp_path):
    overrides = tiny(tmp_path, "trainer.epochs=1", "trainer.amp=bf16")
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and math.isfinite(result["student_ppl"])

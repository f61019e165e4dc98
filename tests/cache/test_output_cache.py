"""The teacher-output cache serves exactly what a live teacher would compute, sample by sample."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.cache.outputs import cached_teacher, use_output_cache
from kdrun.config.errors import ConfigError
from kdrun.data import build_data
from kdrun.engine.cell import run_cell
from kdrun.models.frozen import FrozenTeacher
from kdrun.models import create_model


def live_and_cached(compose_cfg, tmp_path, overrides):
    cfg = compose_cfg([*TINY, *overrides])
    data = build_data(cfg.data, cfg.seed)
    torch.manual_seed(0)
    teacher = FrozenTeacher(create_model("resnet8", num_classes=10, in_chans=1), "resnet8")
    views = data.train.aug_views or 1
    cached = cached_teacher(teacher, "k" * 64, tmp_path / "cache", data.train, views, "cpu")
    return data, teacher, cached


@pytest.mark.parametrize("overrides", [["data.augment=false"], ["data.aug_views=3"]],
                         ids=["plain", "three-views"])
def test_every_cached_row_matches_a_live_forward_of_that_sample(overrides, compose_cfg, tmp_path):
    data, teacher, cached = live_and_cached(compose_cfg, tmp_path, overrides)
    seen = 0
    for epoch in range(3):  # shuffled, and (with views) a different view per epoch
        data.train.set_epoch(epoch)
        for batch in data.train:
            live = teacher(batch)
            served = cached(batch)
            assert torch.allclose(served.logits, live.logits, rtol=2e-3, atol=2e-3)
            assert torch.allclose(served.embedding, live.embedding, rtol=2e-3, atol=2e-3)
            seen += len(batch)
    assert seen >= 3 * (data.train.num_samples - data.train.batch_size)


def test_views_are_replayed_not_redrawn(compose_cfg, tmp_path):
    data, _, _ = live_and_cached(compose_cfg, tmp_path, ["data.aug_views=2"])
    pixels = {}
    for epoch in range(6):
        data.train.set_epoch(epoch)
        for batch in data.train:
            for x, i, v in zip(batch.x, batch.index.tolist(), batch.view.tolist()):
                if (i, v) in pixels:
                    assert torch.equal(pixels[(i, v)], x)
                pixels[(i, v)] = x
    assert {v for _, v in pixels} == {0, 1}


@pytest.mark.parametrize("mode,overrides,expected", [
    ("auto", ["loss=kd", "data.augment=false"], True),
    ("auto", ["loss=kd", "data.aug_views=4"], True),
    ("auto", ["loss=kd"], False),                       # fresh augmentation every epoch
    ("auto", ["loss=[at,kd]", "data.augment=false"], False),  # at reads teacher features
    ("off", ["loss=kd", "data.augment=false"], False),
])
def test_auto_uses_the_cache_only_where_exact(mode, overrides, expected, compose_cfg):
    cfg = compose_cfg([*TINY, *overrides])
    data = build_data(cfg.data, cfg.seed)
    assert use_output_cache(mode, cfg.loss, cfg.data, data.train) is expected


def test_on_explains_why_it_cannot(compose_cfg):
    cfg = compose_cfg([*TINY, "loss=[at,kd]", "data.augment=false"])
    with pytest.raises(ConfigError, match="teacher.cache=on cannot be exact: loss=at reads the teacher's features"):
        use_output_cache("on", cfg.loss, cfg.data, build_data(cfg.data, cfg.seed).train)


def test_cells_share_one_cache_entry_and_match_the_live_run(compose_cfg, tmp_path):
    base = [*TINY, "loss=kd", "data.augment=false"]
    live = run_cell(compose_cfg([*base, "teacher.cache=off"]), tmp_path / "live", [])
    first = run_cell(compose_cfg([*base, "teacher.cache=on"]), tmp_path / "a", [])
    entries = list((tmp_path / "cache" / "outputs").glob("*/meta.json"))
    stamp = entries[0].stat().st_mtime_ns
    second = run_cell(compose_cfg([*base, "loss.kd.temperature=2"]), tmp_path / "b", [])
    assert not live["teacher_cache"] and first["teacher_cache"] and second["teacher_cache"]
    assert len(entries) == 1 and entries[0].stat().st_mtime_ns == stamp
    read = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    for a, b in zip(read("live"), read("a")):  # fp16 storage: equal up to rounding
        assert a["loss/kd"] == pytest.approx(b["loss/kd"], rel=2e-2)

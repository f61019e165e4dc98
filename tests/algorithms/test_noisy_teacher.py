"""algorithm=noisy_teacher: the teacher's logits carry multiplicative noise while it teaches."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from kdrun.algorithms.noisy_teacher import NoisyTeacher
from kdrun.config.errors import ConfigError
from kdrun.data.batch import Batch
from kdrun.engine.cell import run_cell
from kdrun.models.output import ModelOutput


class Fixed:
    """A teacher whose logits are known."""

    model, name = None, "fixed"

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, batch):
        return ModelOutput(logits=self.logits.clone(), features=[], embedding=None)


def test_noise_is_multiplicative_on_the_chosen_fraction_of_samples():
    torch.manual_seed(0)
    clean = torch.randn(4000, 10) + 3.0
    batch = Batch(x=torch.zeros(4000, 1), y=torch.zeros(4000, dtype=torch.long), index=torch.arange(4000))
    noisy = NoisyTeacher(Fixed(clean), std=0.2, probability=0.5)(batch).logits
    changed = (noisy != clean).any(1)
    assert 0.45 < changed.float().mean().item() < 0.55            # about half the samples
    ratio = (noisy[changed] / clean[changed]) - 1                  # xi, per logit
    assert abs(ratio.mean().item()) < 0.01 and abs(ratio.std().item() - 0.2) < 0.01
    assert torch.equal(noisy[~changed], clean[~changed])


@pytest.mark.parametrize("std,probability", [(0.0, 1.0), (0.3, 0.0)])
def test_no_noise_leaves_the_teacher_as_it_is(std, probability):
    clean = torch.randn(8, 5)
    batch = Batch(x=torch.zeros(8, 1), y=torch.zeros(8, dtype=torch.long), index=torch.arange(8))
    assert torch.equal(NoisyTeacher(Fixed(clean), std, probability)(batch).logits, clean)


def test_a_cell_distils_from_the_noisy_teacher(compose_cfg, tmp_path):
    noisy = [*TINY, "algorithm=noisy_teacher", "algorithm.std=0.5", "algorithm.probability=1"]
    result = run_cell(compose_cfg(noisy), tmp_path / "noisy", noisy)
    plain = run_cell(compose_cfg(TINY), tmp_path / "plain", TINY)
    assert result["status"] == "completed" and result["algorithm"] == "noisy_teacher"
    assert result["teacher_top1"] == plain["teacher_top1"]         # evaluated clean
    assert plain["teacher_source"] == "cache"                      # the same cached teacher
    assert plain["teacher_key"] == result["teacher_key"]
    noisy_epoch, plain_epoch = (json.loads((tmp_path / d / "metrics.jsonl").read_text().split("\n")[0])
                                for d in ("noisy", "plain"))
    assert noisy_epoch["loss/kd"] != plain_epoch["loss/kd"]        # the kd term saw other logits


def test_a_probability_outside_0_1_is_refused(compose_cfg, tmp_path):
    overrides = [*TINY, "algorithm=noisy_teacher", "algorithm.probability=1.5"]
    with pytest.raises(ConfigError, match=r"^algorithm.probability=1.5 must be within \[0, 1\]"):
        run_cell(compose_cfg(overrides), tmp_path / "cell", overrides)

"""How K teachers teach as one: combined logits (hand-computed), features picked or averaged."""

from __future__ import annotations

import pytest
import torch

from kdrun.algorithms.teacher_ensemble import (TeacherEnsemble, combine_logits, confidence_weights,
                                               ensemble_top1, mismatch)
from kdrun.data.batch import Batch
from kdrun.models.output import ModelOutput

# two teachers, one sample of three classes, true class 2
LOGITS = torch.tensor([[[1.0, 2.0, 3.0]], [[3.0, 0.0, 0.0]]])
LABELS = torch.tensor([2])


def test_mean_logits():
    assert torch.allclose(combine_logits(LOGITS, "mean"), torch.tensor([[2.0, 1.0, 1.5]]))


def test_weighted_logits_are_normalised():
    # (3 * [1, 2, 3] + 1 * [3, 0, 0]) / 4
    out = combine_logits(LOGITS, "weighted", [3.0, 1.0])
    assert torch.allclose(out, torch.tensor([[1.5, 1.5, 2.25]]))


def test_adaptive_weights_follow_confidence_on_the_label():
    # CE_1 = logsumexp(1, 2, 3) - 3 = 0.407606, CE_2 = logsumexp(3, 0, 0) - 0 = 3.094923
    # a_k = 1 - softmax(CE)_k (K - 1 = 1): a_1 = 0.936274, a_2 = 0.063726
    weights = confidence_weights(LOGITS, LABELS)
    assert torch.allclose(weights, torch.tensor([[0.936274], [0.063726]]), atol=1e-6)
    out = combine_logits(LOGITS, "adaptive", labels=LABELS)
    assert torch.allclose(out, torch.tensor([[1.127452, 1.872548, 2.808822]]), atol=1e-5)


def test_adaptive_weights_sum_to_one_per_sample():
    logits = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    weights = confidence_weights(logits, torch.tensor([0, 1, 2, 3, 0]))
    assert torch.allclose(weights.sum(0), torch.ones(5)) and (weights >= 0).all()
    assert torch.equal(confidence_weights(logits[:1], torch.zeros(5, dtype=torch.long)), torch.ones(1, 5))


def fake_teacher(scale: float):
    def teach(batch):
        b = batch.x.shape[0]
        return ModelOutput(logits=torch.full((b, 3), scale), features=[torch.full((b, 2, 4, 4), scale)],
                           embedding=torch.full((b, 5), scale), preact_features=None)
    return teach


@pytest.mark.parametrize("source, expected", [(0, 1.0), (1, 3.0), ("mean", 2.0)])
def test_feature_teacher_picks_or_averages(source, expected):
    batch = Batch(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1]))
    out = TeacherEnsemble([fake_teacher(1.0), fake_teacher(3.0)], "mean", feature_teacher=source)(batch)
    assert torch.equal(out.logits, torch.full((2, 3), 2.0))
    assert torch.equal(out.features[0], torch.full((2, 2, 4, 4), expected))
    assert torch.equal(out.embedding, torch.full((2, 5), expected))


def test_mismatch_names_the_differing_teacher():
    a = fake_teacher(1.0)(Batch(torch.zeros(2, 1, 8, 8), torch.zeros(2), torch.zeros(2)))
    b = ModelOutput(a.logits, [torch.zeros(2, 7, 4, 4)], a.embedding)
    assert mismatch([a, a]) is None
    assert "teacher 1" in mismatch([a, b])


def test_ensemble_top1_scores_adaptive_as_mean():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return ModelOutput(self.logits.expand(x.shape[0], -1), [], x.new_zeros(x.shape[0], 1))

    loader = [Batch(torch.zeros(4, 1, 2, 2), torch.tensor([2, 2, 2, 0]), torch.arange(4))]
    models = [Fixed(LOGITS[0]), Fixed(LOGITS[1])]  # mean [2, 1, 1.5] -> class 0
    for mode in ("mean", "adaptive"):
        assert ensemble_top1(models, loader, torch.device("cpu"), mode) == 25.0
    # weights [3, 1]: [1.5, 1.5, 2.25] -> class 2
    assert ensemble_top1(models, loader, torch.device("cpu"), "weighted", [3.0, 1.0]) == 75.0

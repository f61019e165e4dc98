"""Every relation method on real architecture pairs, sized by probe outputs: a zoo pair of
one family, a zoo pair of two families, and a timm teacher with a zoo student.
Gradients reach the student and the loss's own parts, never the teacher."""

from __future__ import annotations

import pytest
import torch

from kdrun.data.batch import Batch
from kdrun.losses import LossContext, build_losses, check_outputs, loss_class
from kdrun.models import create_model

PAIRS = [("resnet8", "resnet8"), ("wrn_16_2", "shufflenetv2"), ("mobilenet", "resnet8")]
METHODS = ["cc", "rkd", "pkt", "fsp", "crd", "irg", "ickd", "kdsvd"]
SMALL = {"crd": {"num_negatives": 16}}


@pytest.fixture(scope="module")
def pairs():
    """(teacher, student, probe outputs) per pair, built once; probes as the engine makes them."""
    torch.manual_seed(0)
    built = {}
    for t_name, s_name in PAIRS:
        teacher = create_model(t_name, num_classes=10, in_chans=1).eval()
        student = create_model(s_name, num_classes=10, in_chans=1).eval()
        with torch.no_grad():
            probe = torch.zeros(2, 1, 32, 32)
            built[t_name, s_name] = (teacher, student, student(probe), teacher(probe))
    return built


@pytest.mark.parametrize("pair", PAIRS, ids="->".join)
@pytest.mark.parametrize("method", METHODS)
def test_method_on_real_pair_trains_only_student_and_its_parts(pairs, method, pair):
    teacher, student, probe_s, probe_t = pairs[pair]
    cls = loss_class(method)
    cfg = cls.config(**SMALL.get(method, {}))
    cls.validate(cfg)
    check_outputs({method: cfg}, {"student": (pair[1], probe_s), "teacher": (pair[0], probe_t)})
    loss = build_losses({method: cfg}, probe_s, probe_t, LossContext(num_train=10, num_classes=10))[method]
    teacher.zero_grad(set_to_none=True)
    student.zero_grad(set_to_none=True)
    x = torch.randn(4, 1, 32, 32)
    s_out, t_out = student.train()(x), teacher(x)   # teacher output keeps its graph: the loss must cut it
    batch = Batch(x, torch.zeros(4, dtype=torch.long), torch.arange(4))
    terms = loss.pretrain_terms(s_out, t_out, batch) if method == "fsp" else loss(s_out, t_out, batch)
    assert terms and all(k.startswith(method) for k in terms)
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    student.eval()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.parameters())

"""The registry's one entry point (zoo, aliases, timm) and local weight files."""

from __future__ import annotations

import pytest
import timm
import torch

from kdrun.models import ModelOutput, UnknownModelError, create_model, list_models, zoo_models
from kdrun.models.weights import load_weights


@pytest.mark.parametrize("name, suggestion", [("resnet5", "resnet56"), ("wrn_40_3", "wrn_40_2"),
                                              ("vgg13cifar", "vgg13_cifar")])
def test_unknown_name_suggests_close_names(name, suggestion):
    with pytest.raises(UnknownModelError, match="did you mean") as err:
        create_model(name, num_classes=10)
    assert suggestion in str(err.value)


def test_list_models_has_zoo_and_aliases():
    names = list_models()
    assert set(zoo_models()) <= set(names) and "mobilenet" in names


@pytest.mark.parametrize("name", ["mobilenet", "resnet18"])
def test_alias_and_timm_names_give_stage_features(name):
    model = create_model(name, num_classes=10, in_chans=1)
    out = model(torch.randn(2, 1, 32, 32))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 10)
    assert len(out.features) == 5 and all(f.dim() == 4 for f in out.features)
    assert out.embedding.shape[0] == 2 and out.embedding.dim() == 2


def test_zoo_model_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="checkpoint"):
        create_model("resnet8", num_classes=10, pretrained=True)


def test_none_kwargs_mean_model_default():
    model = create_model("mobilenetv2", num_classes=10, width_mult=None)
    assert model.feature_channels[-1] == 160  # half of 320: width_mult 0.5, the default


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_weights_round_trips_a_zoo_model(tmp_path):
    torch.manual_seed(0)
    saved = create_model("resnet8", num_classes=10)
    torch.save(saved.state_dict(), tmp_path / "resnet8.pt")
    torch.manual_seed(1)
    loaded = create_model("resnet8", num_classes=10)
    assert not _same_weights(saved, loaded)
    load_weights(loaded, tmp_path / "resnet8.pt")
    assert _same_weights(saved, loaded)


def test_load_weights_takes_a_bare_timm_state_dict(tmp_path):
    torch.manual_seed(0)
    bare = timm.create_model("resnet18", num_classes=10)
    torch.save(bare.state_dict(), tmp_path / "resnet18.pt")
    model = create_model("resnet18", num_classes=10)
    load_weights(model, tmp_path / "resnet18.pt")
    assert _same_weights(bare, model.net)


def test_load_weights_with_another_class_count_names_the_shape(tmp_path):
    torch.save(create_model("resnet8", num_classes=100).state_dict(), tmp_path / "c100.pt")
    with pytest.raises(ValueError, match=r"shape .*class count") as err:
        load_weights(create_model("resnet8", num_classes=10), tmp_path / "c100.pt",
                     key="teacher.checkpoint")
    assert "fc.weight" in str(err.value) and "teacher.checkpoint" in str(err.value)

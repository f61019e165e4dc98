"""Labelled sentences for task=embed: `build_sentence_data(cfg.data, seed)`.

    data = build_sentence_data(cfg, seed)   # SentenceBundle: train/train_plain/val/test
    for batch in data.train: batch.x (B, T) token ids (T <= max_len), batch.mask (B, T) real
                             tokens, batch.y (B,) labels, batch.index (B,) rows of the split

data=wordnet: WordNet's noun glosses labelled by lexicographer file (kdrun/data/wordnet.py);
data=sentences: data.path, a .jsonl file of {"text": ..., "label": ...} lines. Both keep the
data.num_classes most frequent labels. The splits are fixed (one permutation drawn with a
fixed seed, the same for every cell), so a sweep's cells and its teacher share them.
Sentences are tokenised with the teacher's WordPiece tokenizer ([CLS] ... [SEP], padded to
data.max_len), which the students share.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from kdrun.data.batch import Batch
from kdrun.data.epoch_order import EpochOrder
from kdrun.data.seeds import FIXED_SEED, numpy_rng
from kdrun.data.wordnet import find_wordnet, fingerprint, read_glosses

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SentenceBatch(Batch):
    """A Batch of token ids with `mask`: (B, T) True on real tokens, False on padding."""

    mask: Tensor | None = None

    def to(self, device, non_blocking: bool = False) -> "SentenceBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return SentenceBatch(move(self.x), move(self.y), move(self.index), None, move(self.mask))


class SentenceLoader(EpochOrder):
    """Batches of one split's (N, max_len) token ids, cut to the batch's longest sentence
    (WordNet glosses average 13 of 32 tokens). shuffle=True: epoch e's order comes from (seed, e). `reference` (N, D) and `probe_fit` are set by task=embed: the teacher's
    embeddings of these rows, and the loader whose embeddings fit the linear probe."""

    aug_views = None
    views = None

    def __init__(self, ids: Tensor, labels: Tensor, pad_id: int, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0):
        self.ids, self.labels, self.pad_id = ids, labels, pad_id
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, False
        self.seed, self.epoch, self.rank, self.world = seed, 0, 0, 1
        self.reference: Tensor | None = None
        self.probe_fit: SentenceLoader | None = None
        self.probe_memo: tuple | None = None  # (model state, its embeddings of these rows)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def in_split_order(self, batch_size: int) -> "SentenceLoader":
        """The same rows (shared, not copied) in fixed split order."""
        plain = copy.copy(self)
        plain.batch_size, plain.shuffle = batch_size, False
        return plain

    def __iter__(self) -> Iterator[SentenceBatch]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.ids.index_select(0, index)
            real = x != self.pad_id
            width = max(int(real.sum(1).max()), 1)   # the batch's longest sentence: padding
            x, real = x[:, :width], real[:, :width]  # beyond it changes no real token's output
            yield SentenceBatch(x, self.labels.index_select(0, index), index, None, real)


@dataclass
class SentenceBundle:
    """The four loaders and the facts models and losses read (probe() builds its dummy input
    from input_shape and input_dtype)."""

    name: str
    train: SentenceLoader
    train_plain: SentenceLoader
    val: SentenceLoader
    test: SentenceLoader
    num_classes: int
    classes: tuple[str, ...]
    vocab_size: int
    pad_id: int
    max_len: int
    identity: str                     # changes whenever the rows would: part of cache keys
    in_chans: int = 1
    image_size: int = 0
    input_dtype: torch.dtype = torch.long
    texts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.max_len,)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {s: getattr(self, s).num_samples for s in SPLITS}


def read_sentences(cfg: Any) -> tuple[list[str], list[str], str]:
    """(texts, labels as strings, a fingerprint of the source) for data=wordnet|sentences."""
    if cfg.name == "wordnet":
        folder = find_wordnet(cfg.root)
        glosses = read_glosses(folder)
        return [g.text for g in glosses], [g.lexname for g in glosses], f"wordnet-{fingerprint(folder)}"
    if cfg.name == "sentences":
        if not cfg.path:
            raise ValueError("data=sentences needs data.path=<a .jsonl file of {\"text\", \"label\"} lines>")
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise ValueError(f"data.path={cfg.path}: no such file")
        texts, labels = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = row["text"], row["label"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"data.path={cfg.path} line {number}: expected a JSON object with "
                                 "\"text\" and \"label\"") from None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"data.path={cfg.path} line {number}: \"text\" is empty or not a string")
            texts.append(text)
            labels.append(str(label))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
        return texts, labels, f"sentences-{digest}"
    raise ValueError(f"data.name={cfg.name} is not a sentence data set: use wordnet or sentences")


def load_tokenizer(spec: str):
    """The teacher's WordPiece tokenizer (`minilm`) or any Hugging Face tokenizer directory."""
    from transformers import AutoTokenizer

    if spec == "minilm":
        from kdrun.models.zoo.text_encoder import minilm_dir

        spec = str(minilm_dir())
    elif not Path(spec).expanduser().is_dir():
        raise ValueError(f"data.tokenizer={spec}: use minilm or a tokenizer directory (no downloads)")
    return AutoTokenizer.from_pretrained(str(Path(spec).expanduser()), local_files_only=True)


def split_rows(n: int, cfg: Any) -> dict[str, np.ndarray]:
    """Row indices per split from one fixed permutation, each cut at data.max_<split>."""
    order = numpy_rng(FIXED_SEED, "sentence-splits").permutation(n)
    n_test, n_val = int(round(n * cfg.test_fraction)), int(round(n * cfg.val_fraction))
    rows = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
            "train": order[n_test + n_val:]}
    for split in SPLITS:
        limit = getattr(cfg, f"max_{split}")
        if limit is not None:
            rows[split] = rows[split][:limit]
        if len(rows[split]) == 0:
            raise ValueError(f"data.{split}: no sentence falls in the {split} split of "
                             f"{n}: give more sentences or change data.test_fraction/val_fraction")
    return rows


def build_sentence_data(cfg: Any, seed: int) -> SentenceBundle:
    texts, labels, source = read_sentences(cfg)
    counts = Counter(labels)
    if len(counts) < 2:
        raise ValueError(f"data={cfg.name}: the sentences carry {len(counts)} label; "
                         "a probe needs at least 2")
    kept = [label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    kept = sorted(kept[:cfg.num_classes] if cfg.num_classes else kept)
    class_of = {label: i for i, label in enumerate(kept)}
    chosen = [i for i, label in enumerate(labels) if label in class_of]
    rows = split_rows(len(chosen), cfg)
    tokenizer = load_tokenizer(cfg.tokenizer)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    loaders, split_texts = {}, {}
    for split in SPLITS:
        picked = [chosen[r] for r in rows[split]]
        split_texts[split] = [texts[i] for i in picked]
        ids = tokenizer(split_texts[split], padding="max_length", truncation=True,
                        max_length=cfg.max_len, return_tensors="pt")["input_ids"].long()
        y = torch.tensor([class_of[labels[i]] for i in picked], dtype=torch.long)
        loaders[split] = SentenceLoader(ids, y, pad_id,
                                        cfg.batch_size if split == "train" else cfg.eval_batch_size,
                                        shuffle=split == "train", seed=seed)
    spec = {"source": source, "classes": kept, "rows": {s: hashlib.sha256(rows[s].tobytes()).hexdigest()
                                                        for s in SPLITS},
            "tokenizer": getattr(tokenizer, "name_or_path", cfg.tokenizer) if cfg.tokenizer != "minilm"
            else "minilm", "vocab": len(tokenizer), "max_len": cfg.max_len, "format": 1}
    identity = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    train = loaders["train"]
    return SentenceBundle(cfg.name, train, train.in_split_order(cfg.eval_batch_size), loaders["val"],
                          loaders["test"], len(kept), tuple(kept), len(tokenizer), pad_id,
                          cfg.max_len, identity, texts=split_texts)

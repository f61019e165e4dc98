"""Token sequences for task=lm: `build_text_data(cfg.data, seed)`.

    data = build_text_data(cfg, seed)   # TextBundle: train/train_plain/val/test TokenLoaders
    for batch in data.train: batch.x (B, T) ids, batch.y (B, T) next ids or IGNORE_INDEX

Documents are tokenised once (cached under data.cache_dir/tokens, keyed by the text's
sha256 and the tokenizer's fingerprint), each followed by eos, and packed into one
stream. The stream is split into fixed blocks of data.split_block tokens (test, val and
train by block number, independent of the seed, so every cell of a sweep sees the same
data) and each split is cut into non-overlapping sequences of seq_len+1 tokens.
prompt/completion examples are one sequence each, padded or truncated, with the prompt
and the padding not scored.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from filelock import FileLock
from torch import Tensor

from kdrun.data.batch import IGNORE_INDEX, Batch
from kdrun.data.corpora import Corpus, CorpusSource, corpus_source
from kdrun.data.epoch_order import EpochOrder
from kdrun.data.text_config import TextDataConfig
from kdrun.data.tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)

TOKENS_FORMAT = 1     # bump when the packing (eos placement, dtype, layout) changes
SPLITS = ("train", "val", "test")


class TokenLoader(EpochOrder):
    """Yields Batch(x, y, index) from the (N, T+1) token rows of one split: x = row[:-1],
    y = row[1:] with IGNORE_INDEX where `scored` (N, T) is False.

    shuffle=True: epoch e's order comes from (seed, e), set with `set_epoch`; iterating
    the same epoch twice gives identical batches. shuffle=False: split order.
    """

    aug_views = None      # token rows have no augmented views
    views = None

    def __init__(self, rows: Tensor, batch_size: int, *, scored: Optional[Tensor] = None,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0):
        self.inputs = rows[:, :-1].contiguous()
        targets = rows[:, 1:].contiguous()
        self.targets = targets if scored is None else targets.masked_fill(~scored, IGNORE_INDEX)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch, self.rank, self.world = seed, 0, 0, 1
        self.tokens = int((self.targets != IGNORE_INDEX).sum())   # scored targets in the split

    @property
    def num_samples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.inputs.shape[1])

    def in_split_order(self, batch_size: int) -> "TokenLoader":
        """The same rows (shared, not copied) in fixed split order, nothing dropped."""
        plain = copy.copy(self)
        plain.batch_size, plain.shuffle, plain.drop_last = batch_size, False, False
        return plain

    def _batch(self, index: Tensor) -> Batch:
        return Batch(self.inputs.index_select(0, index), self.targets.index_select(0, index), index)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        for i in range(len(self)):
            yield self._batch(order[i * self.batch_size:(i + 1) * self.batch_size])

    def view_batches(self, view: int, batch_size: int) -> Iterator[Batch]:
        """Every row in split order (`view` is ignored: rows have no views): what a
        teacher-output cache computes its rows from."""
        n = self.num_samples
        for start in range(0, n, batch_size):
            yield self._batch(torch.arange(start, min(start + batch_size, n)))


@dataclass
class TextBundle:
    """What build_text_data returns; the image-side names (num_classes, image_size, in_chans)
    are kept so code shared with the classification task reads them unchanged."""

    name: str
    train: TokenLoader          # shuffled with the seed
    train_plain: TokenLoader    # the same split in fixed order (teacher-output caching)
    val: TokenLoader
    test: TokenLoader
    tokenizer: Tokenizer
    vocab_size: int             # the models' output width
    seq_len: int
    in_chans: int = 1
    classes: tuple = ()
    mean: tuple = ()
    std: tuple = ()
    input_dtype: torch.dtype = torch.long

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    @property
    def image_size(self) -> int:
        return self.seq_len

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": self.train.num_samples, "val": self.val.num_samples,
                "test": self.test.num_samples}

    @property
    def split_tokens(self) -> dict[str, int]:
        return {"train": self.train.tokens, "val": self.val.tokens, "test": self.test.tokens}


@dataclass
class Tokens:
    """A tokenised corpus: `stream` (int32) holds every document followed by eos, or every
    example (prompt + completion + eos) back to back; `examples` (E, 2) int64 holds each
    example's (prompt length, length), None for documents."""

    stream: np.ndarray
    examples: Optional[np.ndarray] = None


def build_text_data(cfg: TextDataConfig, seed: int) -> TextBundle:
    """Splits and loaders for `cfg`; the same cfg gives the same sequences for every seed
    (only the train order depends on `seed`)."""
    if cfg.seq_len + 1 > cfg.split_block:
        raise ValueError(f"data.split_block={cfg.split_block} must be >= data.seq_len+1="
                         f"{cfg.seq_len + 1}: raise data.split_block or lower data.seq_len")
    source = corpus_source(cfg)
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = cached_tokens(source, tokenizer, cfg.cache_dir)
    if tokens.examples is None:
        splits = split_stream(tokens.stream, cfg, source.key)
    else:
        splits = split_examples(tokens, cfg, tokenizer.pad_id, source.key)
    limits = {"train": cfg.max_train, "val": cfg.max_val, "test": cfg.max_test}
    rows, scored = {}, {}
    for split, (r, s) in splits.items():
        keep = evenly_spaced(len(r), limits[split])
        rows[split] = torch.from_numpy(r[keep].astype(np.int64))
        scored[split] = None if s is None else torch.from_numpy(s[keep])
    n_train = len(rows["train"])
    train = TokenLoader(rows["train"], cfg.batch_size, scored=scored["train"], shuffle=True,
                        drop_last=n_train > cfg.batch_size, seed=seed)
    plain = train.in_split_order(cfg.eval_batch_size)
    val, test = (TokenLoader(rows[s], cfg.eval_batch_size, scored=scored[s]) for s in ("val", "test"))
    bundle = TextBundle(name=cfg.name, train=train, train_plain=plain, val=val, test=test,
                        tokenizer=tokenizer, vocab_size=tokenizer.vocab_size, seq_len=cfg.seq_len)
    log.info("%s with %s: %d tokens; sequences %s, scored tokens %s", source.key, tokenizer.name,
             len(tokens.stream), bundle.split_sizes, bundle.split_tokens)
    return bundle


def evenly_spaced(n: int, limit: Optional[int]) -> np.ndarray:
    """`limit` of range(n), evenly spaced and the same for every seed (all when None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return (np.arange(limit) * n) // limit


def split_of(i: int, cfg: TextDataConfig) -> str:
    """The split of block (or example) i: fixed, spread evenly over the corpus."""
    if i % cfg.test_every == 0:
        return "test"
    if i % cfg.val_every == 1:
        return "val"
    return "train"


RULE = "block b is test when b % data.test_every == 0, val when b % data.val_every == 1"


def split_stream(stream: np.ndarray, cfg: TextDataConfig, key: str) -> dict:
    """{split: ((N, seq_len+1) rows, None)}: each run of consecutive blocks of one split
    cut into non-overlapping rows (its tail shorter than a row is dropped)."""
    width, block, n = cfg.seq_len + 1, cfg.split_block, len(stream)
    blocks = -(-n // block)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    b = 0
    while b < blocks:
        split, end = split_of(b, cfg), b + 1
        while end < blocks and split_of(end, cfg) == split:
            end += 1
        run = stream[b * block:min(end * block, n)]
        rows = len(run) // width
        parts[split].append(run[:rows * width].reshape(rows, width))
        b = end
    out = {}
    for split in ("test", "val", "train"):      # block 0 is test: a short text fails there first
        if not parts[split]:
            raise ValueError(f"{key}: the corpus has {n} tokens in {blocks} block(s) of "
                             f"data.split_block={block}, and the {split} split gets none ({RULE}): "
                             "use a longer text or a smaller data.split_block")
        rows = np.concatenate(parts[split])
        if not len(rows):
            raise ValueError(f"{key}: the corpus has {n} tokens, too few for one {split} sequence "
                             f"of data.seq_len+1={width} tokens: use a longer text or a smaller "
                             "data.seq_len")
        out[split] = (rows, None)
    return out


def split_examples(tokens: Tokens, cfg: TextDataConfig, pad_id: int, key: str) -> dict:
    """{split: ((N, seq_len+1) rows, (N, seq_len) scored)}: example i goes to split_of(i);
    prompt + completion + eos is truncated or padded to seq_len+1; only completion and eos
    targets are scored. Examples whose prompt leaves no target inside the row are dropped."""
    width = cfg.seq_len + 1
    starts = np.concatenate([[0], np.cumsum(tokens.examples[:, 1])[:-1]])
    position = np.arange(1, width)            # the row index each target y[j] holds
    rows = {s: [] for s in SPLITS}
    scored = {s: [] for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    for i, ((prompt, length), start) in enumerate(zip(tokens.examples.tolist(), starts.tolist())):
        split = split_of(i, cfg)
        counts[split] += 1
        used = min(length, width)
        if prompt >= used:
            continue
        row = np.full(width, pad_id, dtype=np.int32)
        row[:used] = tokens.stream[start:start + used]
        rows[split].append(row)
        scored[split].append((position >= prompt) & (position < used))
    out = {}
    total = len(tokens.examples)
    for split in SPLITS:
        if not counts[split]:
            raise ValueError(f"{key}: {total} prompt/completion examples, and the {split} split "
                             f"gets none (example i is test when i % data.test_every == 0, val when "
                             "i % data.val_every == 1): give more examples")
        if not rows[split]:
            raise ValueError(f"{key}: every {split} example's prompt fills data.seq_len+1={width} "
                             "tokens, leaving no completion token to score: raise data.seq_len")
        dropped = counts[split] - len(rows[split])
        if dropped:
            log.warning("%s: %d of %d %s examples dropped: their prompt fills data.seq_len+1=%d "
                        "tokens", key, dropped, counts[split], split, width)
        out[split] = (np.stack(rows[split]), np.stack(scored[split]))
    return out


# --- token cache ----------------------------------------------------------------------------

def cache_key(source: CorpusSource, tokenizer: Tokenizer) -> str:
    blob = json.dumps({"format": TOKENS_FORMAT, "corpus": source.identity,
                       "tokenizer": tokenizer.fingerprint}, sort_keys=True)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(tokenizer.name)).name)[:40]
    return f"{source.identity.split('-')[0]}-{label}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def cached_tokens(source: CorpusSource, tokenizer: Tokenizer, cache_dir: str) -> Tokens:
    """The corpus tokenised, from <cache_dir>/tokens/<key>.npy when there; otherwise tokenised
    once under a file lock (concurrent sweep cells wait for the first) and written atomically."""
    if "${" in str(cache_dir):
        raise ValueError(f"data.cache_dir={cache_dir} is not resolved: set data.cache_dir=<folder>")
    folder = Path(cache_dir).expanduser() / "tokens"
    key = cache_key(source, tokenizer)
    path, examples_path = folder / f"{key}.npy", folder / f"{key}.examples.npy"
    if path.is_file():
        return _load(path, examples_path)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return _load(path, examples_path)
        started = time.perf_counter()
        tokens = tokenize_corpus(source.read(), tokenizer)
        if tokens.examples is not None:      # written first: the stream file marks completion
            _save_atomic(examples_path, tokens.examples)
        _save_atomic(path, tokens.stream)
        log.info("tokenised %s with %s: %d tokens in %.1f s, cached in %s", source.key,
                 tokenizer.name, len(tokens.stream), time.perf_counter() - started, path)
    return tokens


def _load(path: Path, examples_path: Path) -> Tokens:
    examples = np.load(examples_path) if examples_path.is_file() else None
    return Tokens(np.load(path), examples)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tokenize_corpus(corpus: Corpus, tokenizer: Tokenizer) -> Tokens:
    eos = [tokenizer.eos_id]
    if corpus.examples:
        prompts = tokenizer.encode_batch([p for p, _ in corpus.examples])
        completions = tokenizer.encode_batch([c for _, c in corpus.examples])
        pieces = [p + c + eos for p, c in zip(prompts, completions)]
        examples = np.array([(len(p), len(s)) for p, s in zip(prompts, pieces)], dtype=np.int64)
        return Tokens(_concat(pieces), examples)
    return Tokens(_concat([ids + eos for ids in tokenizer.encode_batch(corpus.documents)]))


def _concat(pieces: list[list[int]]) -> np.ndarray:
    return np.concatenate([np.asarray(ids, dtype=np.int32) for ids in pieces])

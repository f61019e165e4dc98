"""Schema of the text data options (task=lm); conf/data/austen.yaml and text.yaml extend it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kdrun.config.bounds import bounded

WHOLE = "or null for the whole split"


@dataclass
class TextDataConfig:
    name: str = "austen"              # austen | text
    # text: a .txt file (one document) or .jsonl: {"text": ...} lines are documents,
    # {"prompt": ..., "completion": ...} lines are examples whose prompt tokens are not scored
    path: Optional[str] = None
    root: Optional[str] = None        # austen: the janeaustenr data folder; null = the known places
    tokenizer: str = "smollm2"        # smollm2 | bytes | a Hugging Face tokenizer directory or hub name
    seq_len: int = bounded(64, ge=2, why="tokens per training sequence")
    batch_size: int = bounded(8, ge=1)
    eval_batch_size: int = bounded(16, ge=1)
    # sequences; picked evenly spaced over the split, the same for every seed
    max_train: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_val: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_test: Optional[int] = bounded(None, ge=1, why=WHOLE)
    cache_dir: str = "${paths.cache_dir}"   # tokenised corpora are cached under <cache_dir>/tokens
    # Fixed splits, the same for every seed: the token stream is cut into blocks of split_block
    # tokens; block b is test when b % test_every == 0, else val when b % val_every == 1, else train
    # (defaults: 5% / 5% / 90%, spread over every book). prompt/completion examples split the same
    # way by example index.
    split_block: int = bounded(2048, ge=2, why="tokens per split block; must be >= data.seq_len+1")
    val_every: int = bounded(20, ge=2, why="one block in val_every goes to val")
    test_every: int = bounded(20, ge=2, why="one block in test_every goes to test")


DATA_SCHEMA = ("text", TextDataConfig)  # schema/data/text (kdrun/data/schemas.py)

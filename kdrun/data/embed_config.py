"""Schema of the sentence data options (task=embed); conf/data/wordnet.yaml and sentences.yaml
extend it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kdrun.config.bounds import bounded

WHOLE = "or null for the whole split"


@dataclass
class SentenceDataConfig:
    name: str = "wordnet"             # wordnet | sentences
    # sentences: a .jsonl file of {"text": ..., "label": ...} lines (label: a string or an int)
    path: Optional[str] = None
    root: Optional[str] = None        # wordnet: the folder of data.noun; null = the known places
    # minilm (all-MiniLM-L6-v2's WordPiece, the teacher's) | a Hugging Face tokenizer directory
    tokenizer: str = "minilm"
    max_len: int = bounded(32, ge=4, why="tokens per sentence, [CLS] and [SEP] included")
    # the N most frequent labels are kept (wordnet: lexicographer files); null = every label
    num_classes: Optional[int] = bounded(8, ge=2, why="or null for every label")
    batch_size: int = bounded(64, ge=1)
    eval_batch_size: int = bounded(128, ge=1)
    # Fixed splits, the same for every seed: one permutation drawn with a fixed seed puts
    # test_fraction of the sentences in test, val_fraction in val and the rest in train.
    test_fraction: float = bounded(0.2, gt=0, lt=1)
    val_fraction: float = bounded(0.1, gt=0, lt=1)
    # sentences per split, the first of the fixed permutation (the same for every seed)
    max_train: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_val: Optional[int] = bounded(None, ge=1, why=WHOLE)
    max_test: Optional[int] = bounded(None, ge=1, why=WHOLE)


DATA_SCHEMA = ("sentences", SentenceDataConfig)  # schema/data/sentences (kdrun/data/schemas.py)

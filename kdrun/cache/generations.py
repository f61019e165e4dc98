"""Teacher generations for sequence-level KD (Kim & Rush, EMNLP 2016), made once per key.

Sequence-level KD trains the student on the teacher's own outputs instead of the corpus:
for each training sequence the teacher continues its first `prompt_tokens` tokens to the
sequence length (greedy decoding, the beam-1 case of the paper's beam search, or
sampling), and the student learns those tokens by cross-entropy. Generating is the
expensive part, so the sequences are stored once per content key (teacher, data, prompt
length, decoding) as an int32 memory-mapped array and shared by every cell of a sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdrun.cache.entry import content_digest, make_once
from kdrun.cache.teachers import data_identity
from kdrun.data.batch import unscore_prompt
from kdrun.tracking.checkpoint import short_reason

log = logging.getLogger(__name__)


def generation_key(teacher_key: str | None, teacher_path: Path, data_cfg: Any, seed: int,
                   prompt_tokens: int, decoding: str, temperature: float) -> str:
    spec = {"teacher": teacher_key or content_digest(teacher_path), "data": data_identity(data_cfg),
            "seed": seed, "prompt_tokens": prompt_tokens, "decoding": decoding,
            "temperature": temperature if decoding == "sample" else None, "format": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class TeacherTargets:
    """The generated sequences, served for a batch by its sequence index."""

    def __init__(self, rows: np.ndarray, prompt_tokens: int):
        self.rows, self.prompt_tokens = rows, prompt_tokens

    def batch_for(self, batch):
        rows = torch.from_numpy(np.ascontiguousarray(self.rows[batch.index.cpu().numpy()]))
        rows = rows.long().to(batch.x.device)
        return replace(batch, x=rows[:, :-1], y=unscore_prompt(rows[:, 1:], self.prompt_tokens))


@torch.no_grad()
def _generate(path: Path, model: torch.nn.Module, loader, prompt_tokens: int, decoding: str,
              temperature: float, seed: int, device, batch_size: int) -> None:
    rows = None
    with torch.random.fork_rng(devices=[]):  # the student's RNG stream is left as it was
        torch.manual_seed(seed)
        for batch in loader.view_batches(0, batch_size=batch_size):
            x = batch.x.to(device)
            full = model.generate(x[:, :prompt_tokens], max_new_tokens=x.shape[1] + 1 - prompt_tokens,
                                  temperature=temperature, greedy=decoding == "greedy")
            if rows is None:
                rows = np.lib.format.open_memmap(path, "w+", np.int32,
                                                 (loader.num_samples, x.shape[1] + 1))
            rows[batch.index.numpy()] = full.cpu().numpy()
    rows.flush()


def _damage(entry: Path, key: str, samples: int) -> str | None:
    """Why a finished entry cannot be served, or None."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        rows = np.load(entry / "rows.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        return short_reason(e)
    if meta != {"key": key, "samples": samples} or rows.shape[0] != samples:
        return f"meta.json {meta} and rows {rows.shape} are not {samples} rows for this key"
    return None


def teacher_targets(model: torch.nn.Module, key: str, cache_dir: Path, loader, seed: int,
                    prompt_tokens: int, decoding: str, temperature: float, device,
                    batch_size: int = 32) -> TeacherTargets:
    """The teacher's continuations of every training sequence, generated on first use."""
    entry = Path(cache_dir) / "generations" / key[:24]
    samples = loader.num_samples

    def fill(folder: Path) -> dict:
        log.info("the teacher continues %d training sequences (%s decoding) into %s", samples,
                 decoding, entry)
        was_training = model.training
        model.eval()
        _generate(folder / "rows.npy", model, loader, prompt_tokens, decoding, temperature, seed,
                  device, batch_size)
        model.train(was_training)
        return {"key": key, "samples": samples}

    make_once(entry, lambda e: _damage(e, key, samples), fill)
    return TeacherTargets(np.load(entry / "rows.npy", mmap_mode="r"), prompt_tokens)

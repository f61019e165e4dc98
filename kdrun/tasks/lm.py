"""Language modelling: token ids in, next-token logits out, scored by perplexity.

`task=lm` trains causal language models (kdrun/models/lm.py) on a text corpus
(kdrun/data/text.py) and scores every split by perplexity, exp of the mean negative
log-likelihood per scored token, and next-token accuracy (percent). The best epoch is
the one with the lowest val_ppl. result.json gains student_ppl, best_student_ppl,
val_ppl, teacher_ppl (and the same for token_acc) and tokens_per_s; each epoch logs a
short sample the student generates from a fixed validation prompt.

Offline distillation only (scheme=offline, algorithm=vanilla): the other schemes and
algorithms are written for image classifiers. The teacher's outputs come from the top-k
cache (kdrun/cache/token_outputs.py) when the losses read only its logits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX
from kdrun.engine import distributed
from kdrun.losses.tokens import token_ce, token_nll
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task

log = logging.getLogger(__name__)


@dataclass
class LMConfig(TaskConfig):
    name: str = "lm"
    # top-k teacher log-probabilities kept per token by the teacher-output cache
    cache_topk: int = bounded(64, ge=1, why="tokens kept per position; the rest mass is kept too")
    sample_tokens: int = bounded(32, ge=0, why="0 logs no sample")  # generated per epoch
    sample_prompt_tokens: int = bounded(16, ge=1)  # of the first validation sequence


class LanguageModeling(Task):
    name = "lm"
    config = LMConfig
    output_type = ModelOutput
    metrics = ("ppl", "token_acc")
    selection = Selection("ppl", "min")
    train_metric = "ppl"
    model_kind = "lm"
    offline_only = True

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data.text import build_text_data

        if not hasattr(data_cfg, "tokenizer"):
            raise ConfigError(f"task=lm needs text data, not data={data_cfg.name}: use data=austen "
                              "or data=text data.path=<file>")
        return build_text_data(data_cfg, seed)

    @torch.no_grad()
    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        was_training = getattr(predictor, "training", False)
        if isinstance(predictor, torch.nn.Module):
            predictor.eval()
        sums = torch.zeros(3, dtype=torch.float64)  # nll, correct, scored
        for batch in loader:
            batch = batch.to(device)
            logits = predictor(batch.x).logits
            scored = batch.y != IGNORE_INDEX
            sums += torch.tensor([token_nll(logits, batch.y).item(),
                                  (logits.argmax(-1)[scored] == batch.y[scored]).sum().item(),
                                  scored.sum().item()], dtype=torch.float64)
        if isinstance(predictor, torch.nn.Module):
            predictor.train(was_training)
        if across_ranks:
            sums = distributed.sum_across_ranks(sums.to(device)).cpu()
        nll, correct, scored = sums.tolist()
        return {"ppl": math.exp(nll / max(scored, 1)), "token_acc": 100.0 * correct / max(scored, 1)}

    def label_loss(self, logits: Tensor, batch: Any) -> Tensor:
        """Token cross-entropy, the mean over scored tokens (0 when none is scored)."""
        return token_ce(logits, batch.y)

    def count(self, batch: Any) -> int:
        return int((batch.y != IGNORE_INDEX).sum())

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        """[nll sum, scored tokens], the nll in chunks of 64 positions: the step's training
        perplexity costs ~20 ms this way and ~130 ms as one (512, 49152) softmax right after
        the optimizer step (benchmarks/bench_lm.py)."""
        rows, targets = logits.flatten(0, 1), batch.y.flatten()
        nll = sum(token_nll(r, t) for r, t in zip(rows.split(64), targets.split(64)))
        return torch.stack([nll, (targets != IGNORE_INDEX).sum().float()])

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        return math.exp(min(sums[0] / max(sums[1], 1), 700.0))

    def format(self, metric: str, value: float) -> str:
        return f"{value:.2f}%" if metric == "token_acc" else f"{value:.2f}"

    def check(self, cfg: Any, data: Any, with_teacher: bool) -> None:
        """Models, scheme and context length; notes the task settings on the bundle (the
        per-epoch sample reads them)."""
        super().check(cfg, data, with_teacher)
        data.task_cfg = cfg.task
        roles = ("student", "teacher") if with_teacher else ("student",)
        for role in roles:
            limit = context_length(getattr(cfg, role), data.vocab_size, role)
            if limit is not None and data.seq_len > limit:
                raise ConfigError(f"data.seq_len={data.seq_len} is longer than the {limit}-token "
                                  f"context of {role}={getattr(cfg, role).name}: use "
                                  f"data.seq_len={limit} or less")

    def serve_teacher(self, teacher, record, cell, live: bool):
        """The top-k cache (kdrun/cache/token_outputs.py) where teacher.cache allows."""
        from kdrun.cache.token_outputs import token_output_key, topk_teacher, use_token_cache

        cfg = cell.cfg
        if live or not use_token_cache(cfg.teacher.cache, cfg.loss):
            return teacher
        k = min(cfg.task.cache_topk, cell.data.vocab_size)
        key = token_output_key(record.key, record.path, cfg.data, k)
        return topk_teacher(teacher, key, cell.cache_dir, cell.data.train, k,
                            cell.data.vocab_size, cell.device, cfg.data.eval_batch_size)

    def objective(self, cell, student, losses, teaching, ce_weight: float):
        """TokenDistiller: on-policy batches for GKD, teacher targets for sequence-level KD."""
        from kdrun.engine.token_objective import TokenDistiller

        cfg = cell.cfg
        on_policy, targets = {}, None
        for name, loss_cfg in cfg.loss.items():
            if loss_cfg.get("on_policy_fraction", 0) > 0:
                on_policy = {"fraction": float(loss_cfg.on_policy_fraction),
                             "prompt_tokens": int(loss_cfg.prompt_tokens),
                             "temperature": float(loss_cfg.sample_temperature)}
            if getattr(type(losses[name]), "teacher_targets", False):
                targets = self._teacher_targets(cell, teaching, loss_cfg)
        if on_policy and on_policy["prompt_tokens"] >= cell.data.seq_len:
            raise ConfigError(f"loss.gkd.prompt_tokens={on_policy['prompt_tokens']} leaves nothing "
                              f"for the student to sample in data.seq_len={cell.data.seq_len} tokens")
        live = teaching.model if teaching is not None else None
        teacher = teaching.teacher if teaching is not None else None
        if all(getattr(type(loss), "teacher_targets", False) or not type(loss).needs_teacher
               for loss in losses.values()):
            teacher = None  # seqkd alone: the teacher wrote the targets, the step never calls it
        return TokenDistiller(student, losses, teacher, ce_weight, self.label_loss,
                              live_teacher=_frozen(live), on_policy=on_policy, targets=targets)

    def _teacher_targets(self, cell, teaching, loss_cfg):
        from kdrun.cache.generations import generation_key, teacher_targets

        cfg, record = cell.cfg, teaching.result
        if loss_cfg.prompt_tokens >= cell.data.seq_len:
            raise ConfigError(f"loss.seqkd.prompt_tokens={loss_cfg.prompt_tokens} leaves nothing "
                              f"to generate in data.seq_len={cell.data.seq_len} tokens")
        key = generation_key(record.get("teacher_key"), record.get("teacher_path"), cfg.data,
                             cfg.seed, loss_cfg.prompt_tokens, loss_cfg.decoding,
                             loss_cfg.temperature)
        return teacher_targets(teaching.model, key, cell.cache_dir, cell.data.train, cfg.seed,
                               loss_cfg.prompt_tokens, loss_cfg.decoding, loss_cfg.temperature,
                               cell.device)

    @torch.no_grad()
    def epoch_extras(self, predictor, data, device, epoch: int) -> dict[str, Any]:
        """A sample of the student's text from the first validation prompt (own RNG, so the
        training stream and resumes are unaffected)."""
        student = getattr(predictor, "student", predictor)
        task_cfg = getattr(data, "task_cfg", None)
        tokens = task_cfg.sample_tokens if task_cfg is not None else 32
        prompt_len = task_cfg.sample_prompt_tokens if task_cfg is not None else 16
        if tokens == 0 or not hasattr(student, "generate") or data.val.num_samples == 0:
            return {}
        prompt = next(iter(data.val)).x[:1, :prompt_len].to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch)
            ids = student.generate(prompt, max_new_tokens=tokens, temperature=0.8, top_k=50)
        text = data.tokenizer.decode(ids[0, prompt_len:].tolist())
        shown = data.tokenizer.decode(prompt[0].tolist())
        log.info("sample after epoch %d: %r -> %r", epoch + 1, shown, text)
        return {"sample": text}

    def result_extras(self, data, result: dict[str, Any]) -> dict[str, Any]:
        wall = result.get("wall_s") or 0.0
        tokens = data.train.tokens * (result.get("epochs_done") or 0)
        return {"train_tokens": data.train.tokens, "seq_len": data.seq_len,
                "tokens_per_s": tokens / wall if wall > 0 else None}


def context_length(model_cfg: Any, vocab: int, role: str = "model") -> int | None:
    """The model's context in tokens, from its architecture built on the meta device (no
    weights read, no memory used)."""
    from kdrun.models.build import build_model

    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        spec = model_cfg.copy() if hasattr(model_cfg, "copy") else model_cfg
        spec.pretrained, spec.checkpoint = False, None
        return build_model(spec, role, vocab, 1, load_checkpoint=False).max_positions


def _frozen(model):
    if model is None:
        return None
    from kdrun.models.frozen import FrozenTeacher

    return FrozenTeacher(model, "teacher")


LM = register_task(LanguageModeling())

"""Sentence embeddings: a text encoder distilled from a pretrained one, scored by what its
embedding is good for.

`task=embed` trains text encoders (kdrun/models/zoo/text_encoder.py: all-MiniLM-L6-v2 as the
teacher, a small BERT as the student) on labelled sentences (kdrun/data/sentences.py: WordNet
glosses by lexicographer file, or a user's jsonl). Every split is scored on the model's
normalised sentence embedding, never on its classifier head:

- probe:     linear-probe accuracy (%): a logistic regression (sklearn, L-BFGS, C=10, fixed)
             fitted on the train split's embeddings, scored on the split
- recall1:   recall@1 (%): how often a sentence's nearest other sentence of the split (cosine)
             has its label
- agreement: linear CKA (Kornblith et al., ICML 2019) between the model's and the teacher's
             embeddings of the split, in [0, 1]: projection-free, so it compares a student
             trained without the teacher (loss=ce) with a distilled one on equal terms

The best epoch is the one with the highest val_probe; result.json gains student_probe,
best_student_probe, val_probe, teacher_probe (and the same for recall1, agreement). The
teacher's embeddings of every split are computed once per (teacher, data) and cached
(make_once): the embed loss reads them by row, and hidden/attention, which need the teacher's
hidden states, run it live. Offline distillation only (scheme=offline, algorithm=vanilla).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.models.output import ModelOutput
from kdrun.tasks.base import Selection, Task, TaskConfig, register_task

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1
PROBE_C = 10.0  # unit-norm embeddings need weak regularisation (C=1 underfits the teacher's)


@dataclass
class EmbedTaskConfig(TaskConfig):
    name: str = "embed"


# --- metrics on embeddings ----------------------------------------------------------------

def linear_probe(fit_x: np.ndarray, fit_y: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (%) on (x, y) of a logistic regression fitted on (fit_x, fit_y), one thread."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        probe = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=0).fit(fit_x, fit_y)
        return 100.0 * float((probe.predict(x) == y).mean())


def recall_at_1(x: Tensor, y: Tensor) -> float:
    """How often (%) each row's nearest other row by cosine similarity shares its label."""
    if x.shape[0] < 2:
        return float("nan")
    unit = torch.nn.functional.normalize(x.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-float("inf"))
    return 100.0 * (y[similarity.argmax(1)] == y).double().mean().item()


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two representations of the same rows: ||Yc^T Xc||_F^2 /
    (||Xc^T Xc||_F ||Yc^T Yc||_F), in [0, 1], invariant to rotation and isotropic scale."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    cross = (y.T @ x).pow(2).sum()
    return (cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-300)).item()


def embedding_scores(fit: tuple[Tensor, Tensor] | None, x: Tensor, y: Tensor,
                     reference: Tensor | None) -> dict[str, float]:
    """probe, recall1 and agreement of embeddings x (labels y) of one split."""
    probe = (linear_probe(fit[0].numpy(), fit[1].numpy(), x.numpy(), y.numpy())
             if fit is not None else float("nan"))
    agreement = linear_cka(x, reference) if reference is not None else float("nan")
    return {"probe": probe, "recall1": recall_at_1(x, y), "agreement": agreement}


@torch.no_grad()
def embed_split(model, loader, device: torch.device) -> Tensor:
    """(N, D) embeddings of a loader's rows, in split order (eval mode, float32 on the CPU)."""
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    out = []
    for batch in loader.in_split_order(loader.batch_size):
        out.append(model(batch.to(device).x).embedding.float().cpu())
    if isinstance(model, torch.nn.Module):
        model.train(was_training)
    return torch.cat(out)


# --- the teacher's embeddings, computed once ------------------------------------------------

class CachedEmbeddings:
    """Serves the teacher's stored embedding of each training row (batch.index), in place of
    running it: what loss=embed reads. Its logits and features are empty."""

    cached = True

    def __init__(self, train: Tensor, name: str):
        self.train, self.name = train, name

    def __call__(self, batch) -> ModelOutput:
        embedding = self.train.index_select(0, batch.index.cpu()).to(batch.x.device)
        return ModelOutput(embedding.new_zeros(embedding.shape[0], 0), [], embedding)


def teacher_identity(cfg: Any, record: Any) -> Any:
    """What determines the teacher's weights: its model spec alone for published weights (the
    same for every seed), else its cache key, else a digest of the checkpoint file."""
    from omegaconf import OmegaConf

    if getattr(record.model, "published", False) and record.source in ("as_built", "pretrained"):
        return {"name": cfg.teacher.name, "kwargs": OmegaConf.to_container(cfg.teacher.kwargs)}
    if record.key is not None:
        return record.key
    from kdrun.cache.entry import content_digest

    return content_digest(record.path)


def teacher_embeddings(model, identity: Any, data, cache_dir: Path, device: torch.device,
                       name: str) -> dict[str, Tensor]:
    """{split: (N, D) teacher embeddings}, computed once per (teacher, data) under
    <cache_dir>/embeddings and read back by every later cell."""
    from kdrun.cache.entry import make_once
    from kdrun.models.frozen import FrozenTeacher

    spec = {"teacher": identity, "data": data.identity, "format": CACHE_FORMAT}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    entry = Path(cache_dir) / "embeddings" / f"{name}-{key[:16]}"
    entry.parent.mkdir(parents=True, exist_ok=True)
    loaders = {"train": data.train_plain, "val": data.val, "test": data.test}

    def damage(folder: Path) -> str | None:
        try:
            for split, loader in loaders.items():
                rows = np.load(folder / f"{split}.npy", mmap_mode="r")
                if rows.shape[0] != loader.num_samples or not np.isfinite(rows).all():
                    return f"{split}.npy holds {rows.shape[0]} rows, not {loader.num_samples}"
        except (OSError, ValueError) as e:
            return f"unreadable ({e})"
        return None

    def fill(folder: Path) -> dict[str, Any]:
        log.info("caching the teacher's embeddings of %s into %s", data.split_sizes, entry)
        frozen = FrozenTeacher(model, name)
        for split, loader in loaders.items():
            np.save(folder / f"{split}.npy", embed_split(frozen.model.to(device), loader, device).numpy())
        return {"key": key, "spec": spec, "rows": data.split_sizes}

    make_once(entry, damage, fill)
    return {split: torch.from_numpy(np.load(entry / f"{split}.npy")) for split in SPLITS}


def attach_references(data, embeddings: dict[str, Tensor]) -> None:
    """The teacher's embeddings ride on the loaders that evaluate() scores agreement on, and
    the train split fits the probe of val and test."""
    data.train_plain.reference = embeddings["train"]
    data.val.reference, data.test.reference = embeddings["val"], embeddings["test"]
    data.val.probe_fit = data.test.probe_fit = data.train_plain


def teacher_cache_reason(loss_cfg: Any) -> str | None:
    """Why the teacher must run live (a loss reads more than its embedding), or None."""
    from kdrun.losses import loss_class

    for name in loss_cfg:
        cls = loss_class(name)
        extra = [f for f in cls.requires if f != "embedding"] if cls.needs_teacher else []
        if extra:
            return f"loss={name} reads the teacher's {', '.join(extra)} (only embeddings are cached)"
    return None


# --- the task --------------------------------------------------------------------------------

class SentenceEmbedding(Task):
    name = "embed"
    config = EmbedTaskConfig
    output_type = ModelOutput
    metrics = ("probe", "recall1", "agreement")
    selection = Selection("probe", "max")
    train_metric = "top1"   # the classifier head's accuracy on the training batches
    model_kind = "text_encoder"
    offline_only = True

    def build_data(self, data_cfg: Any, seed: int) -> Any:
        from kdrun.data.sentences import build_sentence_data

        if not hasattr(data_cfg, "max_len"):
            raise ConfigError(f"task=embed needs sentence data, not data={data_cfg.name}: use "
                              "data=wordnet or data=sentences data.path=<jsonl>")
        return build_sentence_data(data_cfg, seed)

    def evaluate(self, predictor, loader, device, across_ranks: bool = False) -> dict[str, float]:
        x = embed_split(predictor, loader, device)
        fit_loader = getattr(loader, "probe_fit", None)
        fit = None
        if fit_loader is not None:
            fit = (self._fit_embeddings(predictor, fit_loader, device), fit_loader.labels)
        return embedding_scores(fit, x, loader.labels, getattr(loader, "reference", None))

    def _fit_embeddings(self, predictor, fit_loader, device) -> Tensor:
        """The probe's training embeddings, computed once per model state: val and test of one
        epoch share them (the key holds every parameter's version, which a step bumps)."""
        params = list(predictor.parameters()) if isinstance(predictor, torch.nn.Module) else []
        key = (id(predictor), id(fit_loader), tuple(p._version for p in params),
               tuple(p.data_ptr() for p in params))
        if fit_loader.probe_memo is None or fit_loader.probe_memo[0] != key:
            fit_loader.probe_memo = (key, embed_split(predictor, fit_loader, device))
        return fit_loader.probe_memo[1]

    def score_teacher(self, model, loader, device, across_ranks: bool = False) -> dict[str, float]:
        """From the teacher's cached embeddings when they are attached (they are its own)."""
        fit_loader = getattr(loader, "probe_fit", None)
        if getattr(loader, "reference", None) is None or fit_loader is None:
            return super().score_teacher(model, loader, device, across_ranks)
        scores = embedding_scores((fit_loader.reference, fit_loader.labels), loader.reference,
                                  loader.labels, loader.reference)
        return {self.teacher_key(m): scores[m] for m in self.metrics}

    def train_sums(self, logits: Tensor, batch: Any) -> Tensor:
        return (logits.argmax(-1) == batch.y).sum().float()

    def train_value(self, sums: Sequence[float], seen: float) -> float:
        return 100.0 * sums[0] / max(seen, 1)

    def format(self, metric: str, value: float) -> str:
        return f"{value:.3f}" if metric == "agreement" else f"{value:.2f}%"

    def check(self, cfg: Any, data: Any, with_teacher: bool) -> None:
        """Models, scheme and the tokenizer's fit to both models (context and vocabulary)."""
        from kdrun.models.zoo.text_encoder import encoder_limits

        super().check(cfg, data, True)  # the teacher scores agreement even for loss=ce
        for role in ("student", "teacher"):
            model = getattr(cfg, role)
            vocab, positions = encoder_limits(model.name, model.kwargs)
            if data.max_len > positions:
                raise ConfigError(f"data.max_len={data.max_len} is longer than the {positions} "
                                  f"positions of {role}={model.name}: use data.max_len={positions} or less")
            if data.vocab_size > vocab:
                raise ConfigError(f"data.tokenizer={cfg.data.tokenizer} has {data.vocab_size} "
                                  f"tokens but {role}={model.name} embeds {vocab}: use "
                                  "data.tokenizer=minilm")
        if cfg.teacher.cache == "on" and with_teacher:
            reason = teacher_cache_reason(cfg.loss)
            if reason:
                raise ConfigError(f"teacher.cache=on cannot serve cached embeddings: {reason}; "
                                  "use teacher.cache=auto")

    def serve_teacher(self, teacher, record, cell, live: bool):
        """The teacher's cached embeddings (loss=embed alone), else the teacher itself; either
        way its embeddings of every split are attached for agreement and its own scores."""
        cfg = cell.cfg
        embeddings = teacher_embeddings(record.model, teacher_identity(cfg, record), cell.data,
                                        cell.cache_dir, cell.device, cfg.teacher.name)
        attach_references(cell.data, embeddings)
        if live or cfg.teacher.cache == "off" or teacher_cache_reason(cfg.loss):
            return teacher
        return CachedEmbeddings(embeddings["train"], teacher.name)

    def objective(self, cell, student, losses, teaching, ce_weight: float):
        """The label loss on the head plus the loss terms (kdrun's Distiller). Without a
        teacher (loss=ce) the configured teacher's embeddings are still fetched (cached):
        agreement compares every student with the same teacher."""
        from kdrun.engine.distiller import Distiller

        if cell.data.val.reference is None:
            from kdrun.engine.teachers import obtain_teacher

            cfg = cell.cfg
            record = obtain_teacher(cfg.teacher, cfg.data, cell.data, cfg.seed, cell.cache_dir,
                                    cell.device, progress=cfg.trainer.progress, task=self)
            attach_references(cell.data, teacher_embeddings(
                record.model, teacher_identity(cfg, record), cell.data, cell.cache_dir,
                cell.device, cfg.teacher.name))
        return Distiller(student, losses, teaching.teacher if teaching else None, ce_weight,
                         label_loss=self.label_loss)

    def result_extras(self, data, result: dict[str, Any]) -> dict[str, Any]:
        return {"train_sentences": data.train.num_samples, "classes": list(data.classes)}


EMBED = register_task(SentenceEmbedding())

"""Be your own teacher: Zhang, Song, Gao, Chen, Bao & Ma, "Be Your Own Teacher: Improve
the Performance of Convolutional Neural Networks via Self Distillation" (ICCV 2019).

Shallow exits are attached to the network's stages; each is a bottleneck (3x3
stride-2 conv-BN-ReLU layers down to the deepest stage's resolution, widened to the
deepest embedding's width) followed by pooling and a linear classifier. The deepest
classifier learns from labels alone; every exit i learns from labels and from the
detached deepest output:
    (1 - alpha) CE(q_i, y) + alpha * KD(q_i, q_deep) + lambda * ||e_i - e_deep||
with the selected methods as the KD part (loss=kd; the authors' setting is
loss.kd.alpha=0.3 loss.kd.temperature=3) and lambda = scheme.hint_weight (0.03).
The hint compares the pooled exit and deepest embeddings with the L2 norm over the
batch, as the authors' code (torch.dist).

Feature and relation methods compose: an exit's ModelOutput has one feature map
(its bottleneck output) and the deepest one as teacher, so methods whose stage
lists are left at their defaults pair the exit with the deepest stage
(student_stages=[-1], teacher_stages=[-1]); explicit stage settings are kept.
The deployed student is the backbone (best.pt); exits are reported per epoch
(exit<i>/val_top1, ...) and in result.json's `exits`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.engine.assemble import build_student, loss_context, probe, train
from kdrun.losses import build_losses, ce_weight, check_outputs, loss_class
from kdrun.models.output import ModelOutput
from kdrun.schemes.composition import require_composable, require_no_pretraining, transfer_terms
from kdrun.schemes.side_metrics import LogitsView, SideMetrics, summarize

STAGE_KEYS = {"student_stages": [-1], "teacher_stages": [-1], "student_stage": -1,
              "teacher_stage": -1}


class Exit(nn.Module):
    """Bottleneck down to the deepest stage's size and the embedding's width, then a classifier."""

    def __init__(self, in_ch: int, in_size: int, width: int, out_size: int, num_classes: int):
        super().__init__()
        layers, ch, size = [], in_ch, in_size
        while size > out_size or not layers:
            stride = 2 if size > out_size else 1
            layers += [nn.Conv2d(ch, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            ch, size = width, (size + stride - 1) // stride
        self.bottleneck = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, feature: Tensor) -> ModelOutput:
        mapped = self.bottleneck(feature)
        embedding = torch.flatten(F.adaptive_avg_pool2d(mapped, 1), 1)
        return ModelOutput(logits=self.fc(embedding), features=[mapped], embedding=embedding)


class DeepSupervision(nn.Module):
    """terms = {ce (deepest), exit<i>/ce, exit<i>/<method terms>, exit<i>/hint}."""

    def __init__(self, student: nn.Module, exits: dict[int, Exit], losses: dict[int, nn.ModuleDict],
                 ce_weight: float, hint_weight: float):
        super().__init__()
        self.student = student
        self.where = list(exits)
        self.exits = nn.ModuleList(exits.values())
        self.losses = nn.ModuleList(losses[i] for i in self.where)
        self.ce_weight, self.hint_weight, self.epoch = ce_weight, hint_weight, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def predictor(self) -> nn.Module:
        return self.student

    def exit_logits(self, n: int):
        return lambda x: self.exits[n](self.student(x).features[self.where[n]]).logits

    def ensemble_logits(self, x: Tensor) -> Tensor:
        """log of the mean class probability over all classifiers (the paper's ensemble)."""
        out = self.student(x)
        logits = [out.logits, *(e(out.features[i]).logits for i, e in zip(self.where, self.exits))]
        return torch.stack([F.log_softmax(z, 1) for z in logits]).logsumexp(0)

    def forward(self, batch) -> tuple[dict[str, Tensor], Tensor]:
        out = self.student(batch.x)
        deepest = out.detach()
        terms: dict[str, Tensor] = {"ce": F.cross_entropy(out.logits, batch.y)}
        for i, exit_, losses in zip(self.where, self.exits, self.losses):
            shallow = exit_(out.features[i])
            if self.ce_weight > 0:
                terms[f"exit{i}/ce"] = self.ce_weight * F.cross_entropy(shallow.logits, batch.y)
            for key, value in transfer_terms(losses, shallow, deepest, batch, self.epoch).items():
                terms[f"exit{i}/{key}"] = value
            if self.hint_weight > 0:
                terms[f"exit{i}/hint"] = self.hint_weight * torch.dist(shallow.embedding,
                                                                       deepest.embedding)
        return terms, out.logits.detach()


def exit_positions(requested, num_features: int, model_name: str) -> list[int]:
    shallow = list(range(num_features - 1))
    where = list(range(1, num_features - 1)) if requested is None else list(requested)
    if not where or len(set(where)) != len(where) or any(i not in shallow for i in where):
        raise ConfigError(f"scheme.exits={None if requested is None else list(requested)}: "
                          f"{model_name} has features 0..{num_features - 1}; give distinct "
                          f"indices in 0..{num_features - 2} (shallower than the deepest stage)")
    return where


def exit_loss_config(loss_cfg):
    """The methods' configs with default stage choices pointed at the exit's one map."""
    loss_cfg = copy.deepcopy(loss_cfg)
    for name, method in loss_cfg.items():
        defaults = loss_class(name).config()
        for key, single in STAGE_KEYS.items():
            if key in method and method[key] == getattr(defaults, key):
                method[key] = single
    return loss_cfg


def run_byot(cell) -> dict:
    cfg, data, name = cell.cfg, cell.data, cell.cfg.student.name
    require_composable(cfg.loss, "scheme=self scheme.method=byot",
                       "the network's own deepest classifier, which trains alongside")
    student = build_student(cell)
    deep = probe(student, data)
    where = exit_positions(cfg.scheme.exits, len(deep.features), name)
    width, out_size = deep.embedding.shape[1], deep.features[-1].shape[-1]
    loss_cfg = exit_loss_config(cfg.loss)
    exits, losses = {}, {}
    for i in where:
        feature = deep.features[i]
        exits[i] = Exit(feature.shape[1], feature.shape[-1], width, out_size, data.num_classes)
        with torch.no_grad():
            shallow = exits[i].eval()(feature)
        exits[i].train()
        check_outputs(loss_cfg, {"student": (f"{name} exit {i}", shallow), "teacher": (name, deep)})
        losses[i] = build_losses(loss_cfg, shallow, deep, loss_context(data))
        require_no_pretraining(losses[i], "scheme=self scheme.method=byot")
    objective = DeepSupervision(student, exits, losses, ce_weight(cfg.loss),
                                cfg.scheme.hint_weight)
    side = {f"exit{i}": LogitsView(objective, objective.exit_logits(n))
            for n, i in enumerate(where)}
    side["ensemble"] = LogitsView(objective, objective.ensemble_logits)
    tracker = SideMetrics(cell.tracker, side, data, cell.device)
    summary = train(cell, objective, tracker=tracker)
    records = tracker.records()
    return {**summary.as_dict(),
            "exits": [{"exit": i, **summarize(records, f"exit{i}")} for i in where],
            "ensemble": summarize(records, "ensemble"),
            "student_params": sum(p.numel() for p in student.parameters())}

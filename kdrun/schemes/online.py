"""Online distillation: peers learn together, no pre-trained teacher (scheme=online).

    kdrun scheme=online                                   # DML, 2 copies of the student
    kdrun scheme=online scheme.peers=[resnet20,wrn_16_2] loss=[kd,at]
    kdrun scheme=online scheme.method=one scheme.peers=3  # ONE, 3 branches

method=dml: Zhang et al., "Deep Mutual Learning" (CVPR 2018), kdrun/schemes/dml.py.
method=one: Lan et al., "Knowledge Distillation by On-the-Fly Native Ensemble"
(NeurIPS 2018), kdrun/schemes/one.py.

The selected `loss=` methods are the knowledge the peers exchange. Peer 0 is THE
student (result.json's student_top1 etc.; best.pt); every peer's accuracy is
logged each epoch (peer<i>/val_top1, peer<i>/test_top1) and summarised in
result.json's `peers`; each peer's final weights are saved to checkpoints/peer<i>.pt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import ListConfig, OmegaConf

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_scheme
from kdrun.engine.assemble import assemble_losses, build_student, probe, train
from kdrun.tracking.checkpoint import save_atomic
from kdrun.losses import ce_weight
from kdrun.models.build import build_model, check_model_config
from kdrun.engine.config import StudentConfig
from kdrun.schemes.composition import (logits_teacher, require_composable,
                                       require_no_pretraining)
from kdrun.schemes.dml import MutualLearning, pair_key
from kdrun.schemes.one import Gate, NativeEnsemble, share_trunk
from kdrun.schemes.side_metrics import LogitsView, SideMetrics, summarize

METHODS = ("dml", "one")


@dataclass
class OnlineConfig:
    """Online distillation (Zhang et al. 2018 DML; Lan et al. 2018 ONE)."""

    name: str = "online"
    method: str = "dml"               # dml | one
    peers: Any = 2                    # a count of student copies, or model names [a, b, ...]
    # one: trailing stages each branch owns (the paper: 1)
    branch_stages: int = bounded(1, ge=1,
                                 why="checked against the model's stages too (the paper: 1)")


def peer_configs(cfg) -> list[Any]:
    """One model config per peer; peer 0 is the student. A named peer that is the
    student's model uses the student's config (kwargs, checkpoint), others the defaults."""
    scheme, peers = cfg.scheme, cfg.scheme.peers
    if isinstance(peers, int) and not isinstance(peers, bool):
        if peers < 2:
            raise ConfigError(f"scheme.peers={peers}: online distillation needs at least 2 peers")
        return [cfg.student] * peers
    named = isinstance(peers, (list, ListConfig)) and all(isinstance(p, str) for p in peers)
    if named and len(peers) >= 2:
        if scheme.method == "one":
            raise ConfigError(f"scheme.peers={list(peers)}: ONE's branches share one "
                              "architecture's trunk; give a count (scheme.peers=3, copies of "
                              "student=) or use scheme.method=dml for different peers")
        return [cfg.student if name == cfg.student.name
                else OmegaConf.structured(StudentConfig(name=name)) for name in peers]
    raise ConfigError(f"scheme.peers={peers}: give a count >= 2 (copies of the student) or a "
                      "list of at least 2 model names, e.g. scheme.peers=[resnet20,wrn_16_2]")


def build_peers(cell, configs: list[Any]) -> list[torch.nn.Module]:
    """Peer 0 is initialised like an offline student (from `seed`); the others continue the
    same RNG stream, so every peer starts from a different initialisation."""
    for i, mcfg in enumerate(configs):
        try:
            check_model_config(mcfg, "student" if i == 0 else "scheme.peers", cell.data.num_classes)
        except ConfigError as e:
            raise ConfigError(f"scheme.peers[{i}]: {e}") from None
    peers = [build_student(cell, configs[0])]
    data = cell.data
    peers += [build_model(mcfg, "scheme.peers", data.num_classes, data.in_chans)
              for mcfg in configs[1:]]
    return peers


def _build_dml(cell, configs, peers):
    cfg = cell.cfg
    require_composable(cfg.loss, "scheme=online scheme.method=dml",
                       "the other peers, which train alongside")
    probes = [probe(peer, cell.data) for peer in peers]
    losses = {}
    for i, peer in enumerate(peers):
        for j, teacher_probe in enumerate(probes):
            if i != j:
                losses[pair_key(i, j)] = assemble_losses(cell, cfg.loss, peer, configs[i].name,
                                                         teacher_probe, configs[j].name)
    for pair in losses.values():
        require_no_pretraining(pair, "scheme=online")
    objective = MutualLearning(peers, losses, ce_weight(cfg.loss))
    return objective, {f"peer{i}": peer for i, peer in enumerate(peers)}


def _build_one(cell, configs, peers):
    cfg = cell.cfg
    require_composable(cfg.loss, "scheme=online scheme.method=one",
                       "the branches' gated ensemble", logits_only=True,
                       instead="scheme.method=dml")
    trunk_index = share_trunk(peers, cfg.scheme.branch_stages, configs[0].name)
    student_probe = probe(peers[0], cell.data)
    teacher_probe = logits_teacher(student_probe.logits)
    losses = [assemble_losses(cell, cfg.loss, branch, configs[0].name, teacher_probe,
                              "ensemble") for branch in peers]
    for branch_losses in losses:
        require_no_pretraining(branch_losses, "scheme=online")
    gate = Gate(student_probe.features[trunk_index].shape[1], len(peers))
    objective = NativeEnsemble(peers, trunk_index, gate, losses, ce_weight(cfg.loss))
    side = {f"peer{i}": branch for i, branch in enumerate(peers)}
    side["ensemble"] = LogitsView(objective, objective.ensemble_logits)
    return objective, side


@register_scheme
class Online(Plugin):
    """Peers learn together: the whole learning is the peers' (the `learn` extension point)."""

    name = "online"
    config = OnlineConfig

    def learn(self, cell) -> dict:
        return distill_online(cell)


def distill_online(cell) -> dict:
    cfg = cell.cfg
    if cfg.scheme.method not in METHODS:
        raise ConfigError(f"scheme.method={cfg.scheme.method}: use one of {', '.join(METHODS)} "
                          "(dml: Zhang et al. 2018; one: Lan et al. 2018)")
    configs = peer_configs(cfg)
    peers = build_peers(cell, configs)
    build = _build_dml if cfg.scheme.method == "dml" else _build_one
    objective, side = build(cell, configs, peers)
    tracker = SideMetrics(cell.tracker, side, cell.data, cell.device)
    summary = train(cell, objective, tracker=tracker)

    records = tracker.records()
    ckpt_dir = cell.dir / "checkpoints"
    entries = []
    for i, (mcfg, peer) in enumerate(zip(configs, peers)):
        path = ckpt_dir / f"peer{i}.pt"
        save_atomic({"model": peer.state_dict()}, path)
        entries.append({"peer": i, "name": mcfg.name, **summarize(records, f"peer{i}"),
                        "checkpoint": str(path)})
    result = {"teacher": None, "teacher_top1": None, "teacher_source": None,
              "student": configs[0].name, "scheme_method": cfg.scheme.method,
              **summary.as_dict(), "peers": entries,
              "student_params": sum(p.numel() for p in peers[0].parameters())}
    if "ensemble" in side:
        result["ensemble"] = summarize(records, "ensemble")
    return result

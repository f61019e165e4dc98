"""Federated learning with FedAvg or distillation (FedDF) aggregation.

    kdrun algorithm=federated data.partition=dirichlet data.num_partitions=4 loss=kd
    kdrun algorithm=federated algorithm.aggregation=fedavg loss=ce
    kdrun -m algorithm=federated data.partition=dirichlet data.dirichlet_beta=0.5,0.1  # a sweep

The clients are the parts of data.partition (none = iid) of the train split, less a
public split (algorithm.public_fraction, stratified, labels unused). Clients and
server are models of the `student` group. Each round the chosen clients train the
server's weights on their part with label CE (McMahan et al. 2017); the server
averages them (fedavg), and with `distill` then distils the clients' mean logits on
the public split with the selected loss terms and no label CE (FedDF, Lin et al. 2020).
Alballa & Canini (2024) count the rounds KD saves: result.json has every round and
rounds_to_target. Resumable per round: checkpoints/last.pt holds the finished rounds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from kdrun.config.bounds import bounded
from kdrun.algorithms.federated_round import Federation, drop_weights, run_round
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.config.validate import OPTIMIZERS, SCHEDULES
from kdrun.data.partition import check_partition_config
from kdrun.data.partition_view import partitions_of, restrict, write_partitions
from kdrun.engine.assemble import assemble_losses, build_student, probe_architecture
from kdrun.tracking.checkpoint import load_checkpoint, save_atomic
from kdrun.engine.config import OptimConfig, SchedConfig
from kdrun.losses import DistillationLoss, loss_class, needs_teacher

log = logging.getLogger(__name__)
AGGREGATIONS = ("fedavg", "distill")


@dataclass
class FederatedConfig:
    """McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
    Data" (AISTATS 2017); Lin et al., "Ensemble Distillation for Robust Model Fusion in
    Federated Learning" (FedDF, NeurIPS 2020); Alballa & Canini (2024)."""

    name: str = "federated"
    aggregation: str = "distill"      # fedavg | distill (FedAvg, then FedDF ensemble distillation)
    rounds: int = bounded(10, ge=1)  # communication rounds
    clients_per_round: Optional[int] = bounded(None, ge=1)  # null = every client (McMahan's C = 1)
    local_epochs: int = bounded(1, ge=1)  # McMahan's E (client epochs per round), with optim/sched
    # of the train split, held out of every client (FedDF)
    public_fraction: float = bounded(0.1, ge=0, lt=1)
    server_epochs: int = bounded(5, ge=1)  # distill: epochs over the public split per round
    server_optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="adam", lr=1e-4, weight_decay=0.0))  # FedDF: Adam at 1e-3 for up to 1e4 steps;
    #   a few epochs on a small public split at 1e-3 undo FedAvg's progress (measured on digits)
    server_sched: SchedConfig = field(default_factory=lambda: SchedConfig(name="constant"))
    # rounds_to_target: first round with test top-1 >= it
    target_top1: Optional[float] = bounded(None, gt=0, le=100, why="a test top-1 in %, or null")


def check_federated(cfg: Any) -> None:
    """Everything the rounds will read, checked before the first client trains."""
    algo, data_cfg = cfg.algorithm, cfg.data
    check_partition_config(data_cfg)
    if algo.aggregation not in AGGREGATIONS:
        raise ConfigError(f"algorithm.aggregation={algo.aggregation}: use fedavg or distill")
    per_round = algo.clients_per_round
    if per_round is not None and not 1 <= per_round <= data_cfg.num_partitions:
        raise ConfigError(f"algorithm.clients_per_round={per_round}: use 1..data.num_partitions="
                          f"{data_cfg.num_partitions}, or null for all")
    distill = algo.aggregation == "distill"
    if not (0.0 < algo.public_fraction < 1.0 if distill else 0.0 <= algo.public_fraction < 1.0):
        raise ConfigError(f"algorithm.public_fraction={algo.public_fraction} must be in "
                          f"{'(0, 1): distill needs a public split' if distill else '[0, 1)'}")
    if distill and not needs_teacher(cfg.loss):
        raise ConfigError("algorithm.aggregation=distill distils the clients into the server: "
                          "pick a loss that reads a teacher (e.g. loss=kd), or aggregation=fedavg")
    if not distill and needs_teacher(cfg.loss):
        raise ConfigError(f"algorithm.aggregation=fedavg has no teacher for loss={list(cfg.loss)}: "
                          "use loss=ce, or algorithm.aggregation=distill")
    if algo.server_optim.name not in OPTIMIZERS or not algo.server_optim.lr > 0:
        raise ConfigError(f"algorithm.server_optim: name in {OPTIMIZERS} and lr > 0 "
                          f"(got {algo.server_optim.name}, {algo.server_optim.lr})")
    if algo.server_sched.name not in SCHEDULES:
        raise ConfigError(f"algorithm.server_sched.name={algo.server_sched.name}: use one of "
                          f"{', '.join(SCHEDULES)}")
    if algo.target_top1 is not None and not 0 < algo.target_top1 <= 100:
        raise ConfigError(f"algorithm.target_top1={algo.target_top1} must be in (0, 100] or null")
    for name in cfg.loss:
        if loss_class(name).bind_teacher is not DistillationLoss.bind_teacher:
            raise ConfigError(f"loss={name} reuses parts of one teacher model, but the server's "
                              "teacher is the clients' ensemble: pick another method")
    for role in ("student", "teacher"):
        if getattr(cfg[role], "partition", None) is not None:
            raise ConfigError(f"{role}.partition is not read by algorithm=federated (the clients "
                              f"are the partitions): drop it; student.checkpoint= starts the "
                              "server from a pre-trained model")


def federation(cell) -> Federation:
    """Client bundles, the public split and (distill) the server's loss terms."""
    cfg, data, algo = cell.cfg, cell.data, cell.cfg.algorithm
    scheme = "iid" if cfg.data.partition == "none" else cfg.data.partition
    parts = partitions_of(data, cfg.data, cfg.seed, algo.public_fraction, scheme)
    write_partitions(cell.dir, cfg.data, data, cfg.seed, parts)
    clients = [restrict(data, p, f"client{k}") for k, p in enumerate(parts.parts)]
    public = None if parts.public is None else restrict(data, parts.public, "public")
    return Federation(clients, public, None)


def rounds_to_target(rounds: list[dict[str, Any]], target: float | None) -> int | None:
    return next((r["round"] for r in rounds if target is not None and r["test_top1"] >= target), None)


@register_algorithm
class Federated(Plugin):
    """Clients learn on their partitions and a server aggregates them each round: the
    rounds are the whole learning (`learn`)."""

    name = "federated"
    config = FederatedConfig

    def learn(self, cell) -> dict:
        return federate(cell)


def federate(cell) -> dict:
    cfg, algo, ckpt_dir = cell.cfg, cell.cfg.algorithm, cell.dir / "checkpoints"
    check_federated(cfg)
    fed = federation(cell)
    server = build_student(cell).to(cell.device)
    if algo.aggregation == "distill":  # the teacher is the clients' ensemble: student architecture
        clients_probe = probe_architecture(cfg.student, "student", cell.data)
        fed.losses = assemble_losses(cell, cfg.loss, server, cfg.student.name, clients_probe,
                                     cfg.student.name).to(cell.device)
    rounds: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_top1": None, "best_student_top1": None, "best_round": None}
    wall, resumed_from = 0.0, 0
    state = load_checkpoint(ckpt_dir / "last.pt")
    if state is not None:
        server.load_state_dict(state["model"])
        if fed.losses is not None:
            fed.losses.load_state_dict(state["losses"])
        torch.set_rng_state(state["rng"])
        rounds, best, wall = state["rounds"], state["best"], state["wall_s"]
        resumed_from = len(rounds)
        log.info("federated: resuming after round %d", len(rounds))
    cell.tracker.resume_at(len(rounds))

    for round_ in range(len(rounds) + 1, algo.rounds + 1):
        started = time.perf_counter()
        folder = ckpt_dir / f"round_{round_:03d}"
        record = run_round(cell, round_, server, fed, folder)
        elapsed = time.perf_counter() - started
        wall += elapsed
        record.update(round_s=elapsed, wall_s=wall)
        rounds.append(record)
        if best["val_top1"] is None or record["val_top1"] > best["val_top1"]:
            best = {"val_top1": record["val_top1"], "best_student_top1": record["test_top1"],
                    "best_round": round_}
            save_atomic({"model": server.state_dict(), "round": round_,
                         "val_top1": record["val_top1"]}, ckpt_dir / "best.pt")
        line = {k: v for k, v in record.items() if not isinstance(v, list)}
        cell.tracker.log_epoch({"epoch": round_, **line,
                                "rounds_to_target": rounds_to_target(rounds, algo.target_top1)})
        save_atomic({"model": server.state_dict(), "rng": torch.get_rng_state(), "rounds": rounds,
                     "best": best, "wall_s": wall,
                     "losses": fed.losses.state_dict() if fed.losses is not None else {}},
                    ckpt_dir / "last.pt")
        drop_weights(folder)
        log.info("round %d/%d: val %.2f%% test %.2f%% (%.1fs)", round_, algo.rounds,
                 record["val_top1"], record["test_top1"], record["round_s"])

    return {"teacher": None, "teacher_top1": None, "teacher_source": None,
            "student_top1": rounds[-1]["test_top1"], **best, "epochs_done": len(rounds),
            "wall_s": wall, "rounds": rounds, "target_top1": algo.target_top1,
            "rounds_to_target": rounds_to_target(rounds, algo.target_top1),
            "aggregation": algo.aggregation, "clients": len(fed.clients),
            "partition": "iid" if cfg.data.partition == "none" else cfg.data.partition,
            "resumed_from": resumed_from,
            "student_params": sum(p.numel() for p in server.parameters())}

"""graph: Lee & Song, "Graph-based Knowledge Distillation by Multi-head Attention Network"
(MHGD, BMVC 2019).

Knowledge as a graph over the batch: a multi-head attention network, trained on the
teacher first, relates every pair of samples through the change of the teacher's
embedding between consecutive stages; the student then learns to produce the same
graphs (see kdrun/losses/relation/mhgd.py). Unlike the fixed relation losses of the method library
(rkd, sp, cc, ...), the relation is learned. The graph term is added to whatever
`loss=` selects (loss=kd: KD plus the graph; loss=ce: the graph alone, as in the
paper's multi-task setting), so a teacher is always used.

    kdrun algorithm=graph                       # KD + learned graph, paper defaults
    kdrun algorithm=graph loss=ce algorithm.mha_epochs=10
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from kdrun.config.bounds import bounded
from kdrun.losses.relation.mhgd import GraphLoss
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.losses.stages import check_pairing


@dataclass
class GraphConfig:
    """MHGD's settings; defaults from the authors' code (KD_methods_with_TF, MHGD)."""

    name: str = "graph"
    heads: int = bounded(8, ge=1)  # attention heads (num_head = 8)
    num_vectors: int = bounded(1, ge=1)  # singular vectors kept per teacher stage (KD-SVD's k)
    student_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    teacher_stages: List[int] = bounded(factory=lambda: [-3, -2, -1], free="stage indices, checked against the models when the loss is built")
    # attention trained on the teacher first; null: 40% of
    mha_epochs: Optional[int] = bounded(None, ge=1,
                                        why="or null: the attention graph is learned on the teacher before the student")
                                      # trainer.epochs (the paper: 40 before 100 epochs of KD)
    weight: float = bounded(1.0, ge=0)  # weight of the graph term (the authors clip instead)


def mha_epochs(cfg, trainer_epochs: int) -> int:
    """Epochs of the attention's own training: as set, else the paper's 40:100 ratio."""
    return cfg.mha_epochs if cfg.mha_epochs is not None else max(1, round(0.4 * trainer_epochs))


def validate(cfg) -> None:
    check_pairing(cfg.student_stages, cfg.teacher_stages, "algorithm")
    if len(cfg.student_stages) < 2:
        raise ConfigError(f"algorithm.student_stages={list(cfg.student_stages)}: a graph relates "
                          "consecutive stages, so give at least two")


@register_algorithm
class Graph(Plugin):
    """A learned graph term beside the selected losses; its attention reads the teacher's live
    stage features, so a teacher is used even when no selected loss needs one."""

    name = "graph"
    config = GraphConfig
    teacher_required = True
    live_teacher = True

    def check(self, cell) -> None:
        validate(cell.cfg.algorithm)

    def losses(self, cell, losses, student_probe, teacher_probe):
        if "graph" in losses:
            raise ConfigError("loss=graph clashes with algorithm=graph's own term; drop it")
        cfg = cell.cfg.algorithm
        losses["graph"] = GraphLoss(cfg, student_probe, teacher_probe,
                                    mha_epochs=mha_epochs(cfg, cell.cfg.trainer.epochs))
        return losses

    def result(self, cell, objective, result) -> dict:
        graph = objective.losses["graph"]
        return {"graph_pairs": len(graph.attention), "graph_mha_epochs": graph.pretrain_epochs,
                "graph_params": sum(p.numel() for p in graph.pretrain_parameters(None))}

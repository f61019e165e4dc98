"""Self distillation: a network teaches itself, no separate teacher (scheme=self).

    kdrun scheme=self scheme.method=ban scheme.generations=2 loss=kd
    kdrun scheme=self scheme.method=byot loss=kd loss.kd.alpha=0.3 loss.kd.temperature=3
    kdrun scheme=self scheme.method=tfkd loss=kd
    kdrun scheme=self scheme.method=cskd loss=kd loss.kd.alpha=0.5

ban:  Furlanello et al., "Born-Again Neural Networks" (ICML 2018), kdrun/schemes/ban.py
byot: Zhang et al., "Be Your Own Teacher" (ICCV 2019), kdrun/schemes/byot.py
tfkd: Yuan et al., "Revisiting Knowledge Distillation via Label Smoothing
      Regularization" (CVPR 2020; Tf-KD_reg), kdrun/schemes/tfkd.py
cskd: Yun et al., "Regularizing Class-wise Predictions via Self-knowledge
      Distillation" (CVPR 2020), kdrun/schemes/cskd.py

The selected `loss=` methods carry the knowledge from the self-teacher (the
previous generation, the deepest exit, the virtual distribution, a same-class
sample) to the learner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_scheme

METHODS = ("ban", "byot", "tfkd", "cskd")


@dataclass
class SelfConfig:
    """Self distillation: BAN (Furlanello 2018), BYOT (Zhang 2019), Tf-KD (Yuan 2020),
    CS-KD (Yun 2020); each field names the method it belongs to."""

    name: str = "self"
    method: str = "ban"               # ban | byot | tfkd | cskd
    # ban: born-again generations after generation 0 (paper: 3)
    generations: int = bounded(3, ge=1, why="born-again students trained after generation 0")
    # byot: features indices with an exit (null: all stages
    exits: Optional[List[int]] = bounded(None, free="stage indices, checked against the model")
                                       # but the stem and the deepest)
    # byot: lambda of the L2 hint exit -> deepest embedding
    hint_weight: float = bounded(0.03, ge=0)
    # tfkd: the virtual teacher's probability of the true class
    correct_prob: float = bounded(0.9, gt=0, lt=1,
                                  why="checked against 1/classes too (the paper: 0.9)")


def validate_self(scfg, num_classes: int) -> None:
    if scfg.method not in METHODS:
        raise ConfigError(f"scheme.method={scfg.method}: use one of {', '.join(METHODS)}")
    if not 1.0 / num_classes < scfg.correct_prob < 1.0:
        raise ConfigError(f"scheme.correct_prob={scfg.correct_prob} must lie in "
                          f"(1/{num_classes}, 1): the virtual teacher must favour the true class "
                          "without being one-hot (the paper: 0.9)")


@register_scheme
class SelfDistillation(Plugin):
    """The model teaches itself: generations, exits, a virtual or class-wise teacher, each a
    different learning procedure (the `learn` extension point)."""

    name = "self"
    config = SelfConfig

    def learn(self, cell) -> dict:
        return distill_self(cell)


def distill_self(cell) -> dict:
    scfg = cell.cfg.scheme
    validate_self(scfg, cell.data.num_classes)
    if scfg.method == "ban":
        from kdrun.schemes.ban import run_ban as run
    elif scfg.method == "byot":
        from kdrun.schemes.byot import run_byot as run
    elif scfg.method == "tfkd":
        from kdrun.schemes.tfkd import run_tfkd as run
    else:
        from kdrun.schemes.cskd import run_cskd as run
    result = run(cell)
    return {"teacher": None, "teacher_top1": None, "teacher_source": None,
            "scheme_method": scfg.method, **result}

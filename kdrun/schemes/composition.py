"""How the method library composes with the online and self schemes.

Under offline distillation a loss reads a trained, frozen teacher. In the online
and self schemes the "teacher" is a peer, an earlier generation, a deeper exit, a
same-class sample or a virtual distribution, so some methods cannot apply: those
that reuse parts of a trained teacher (simkd, srd: its classifier), those with a
pre-training stage against a fixed teacher (fitnet, ab, ft, fsp stages) and, where
the teacher has logits only, every method that reads features or embeddings.
The checks here fail before training and say what composes instead.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from kdrun.config.errors import ConfigError
from kdrun.losses import DistillationLoss, loss_class, loss_classes
from kdrun.models.output import ModelOutput


def _overrides(cls: type[DistillationLoss], hook: str) -> bool:
    return getattr(cls, hook) is not getattr(DistillationLoss, hook)


def logits_only_methods() -> list[str]:
    """Methods that read nothing but the teacher's logits (they compose with any teacher)."""
    return sorted(name for name, cls in loss_classes().items()
                  if cls.needs_teacher and set(cls.requires) <= {"logits"}
                  and not _overrides(cls, "bind_teacher"))


def require_composable(loss_cfg: Mapping[str, Any], where: str, teacher: str,
                       logits_only: bool = False, instead: str = "") -> None:
    """Fail (ConfigError) when a selected method cannot be taught by `teacher` under `where`.

    `where` names the setting (e.g. "scheme=online scheme.method=dml"), `teacher`
    says what teaches there (e.g. "the other peers, which train alongside"); `instead`
    names the settings where feature and relation methods do compose.
    """
    for name in loss_cfg:
        cls = loss_class(name)
        if not cls.needs_teacher:
            continue
        if _overrides(cls, "bind_teacher") or _overrides(cls, "student_logits"):
            raise ConfigError(
                f"loss={name} reuses the classifier of a trained, frozen teacher, and under "
                f"{where} the teacher is {teacher}: pick another method (e.g. kd, at, sp) or "
                "use scheme=offline or scheme=self scheme.method=ban")
        missing = sorted(set(cls.requires) - {"logits"})
        if logits_only and missing:
            raise ConfigError(
                f"loss={name} reads the teacher's {', '.join(missing)}, but under {where} the "
                f"teacher is {teacher}, which has logits only: use a response method "
                f"({', '.join(logits_only_methods())}), or {instead} for feature and "
                "relation methods")


def require_no_pretraining(losses: nn.ModuleDict, where: str) -> None:
    """Fail when a method has a stage before distillation: it needs a fixed, trained teacher."""
    for name, loss in losses.items():
        if loss.pretrain_epochs > 0:
            raise ConfigError(
                f"loss={name} runs a {loss.pretrain_epochs}-epoch stage against a fixed, trained "
                f"teacher before distillation, which {where} does not have: turn that stage off "
                f"where loss.{name} allows it (e.g. loss.fitnet.hint_epochs=0, "
                "loss.fsp.init_epochs=0), or use scheme=offline or scheme=self scheme.method=ban")


def transfer_terms(losses: nn.ModuleDict, student: ModelOutput, teacher: ModelOutput | None,
                   batch: Any, epoch: int) -> dict[str, Tensor]:
    """The selected methods' named terms for one (learner, teacher) pair, warm-up applied."""
    terms: dict[str, Tensor] = {}
    for name, loss in losses.items():
        ramp = loss.warmup_factor(epoch)
        for key, value in loss(student, teacher, batch).items():
            if key in terms:
                raise RuntimeError(f"loss {name} returns a term {key!r} that another term "
                                   "already uses; term names must be unique")
            terms[key] = value if ramp == 1.0 else ramp * value
    return terms


def logits_teacher(logits: Tensor) -> ModelOutput:
    """A teacher that has only logits (a virtual distribution, a gated ensemble)."""
    return ModelOutput(logits=logits, features=[], embedding=None)

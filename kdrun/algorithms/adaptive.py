"""adaptive: the KD temperature and per-sample loss weights adapt during training.

Curriculum Temperature KD, Li et al., "Curriculum Temperature for Knowledge
Distillation" (CTKD, AAAI 2023): the temperature of `loss.kd` is learned adversarially
(a gradient reversal layer makes it maximise the KD loss) under a cosine curriculum of
the reversal strength; optional confidence-adaptive per-sample weights (Zhou et al.,
ICLR 2021 weighted soft labels, or the teacher's confidence in the label) scale each
sample's KD term. See kdrun/losses/response/ctkd.py for the formulas.

kd must be selected (it is the default): its fixed `loss.kd.temperature` is replaced by
the learned one; its alpha (and the engine's 1 - alpha on the CE) is kept, and every
other selected method applies unchanged. Without kd the cell fails before training.

    kdrun algorithm=adaptive                              # CTKD, global temperature
    kdrun algorithm=adaptive algorithm.temperature=instance algorithm.weighting=wsl
"""

from __future__ import annotations

from dataclasses import dataclass

from kdrun.config.bounds import bounded
from kdrun.losses.response.ctkd import TEMPERATURES, WEIGHTINGS, AdaptiveKD
from kdrun.config.errors import ConfigError
from kdrun.engine.plugins import Plugin, register_algorithm
from kdrun.losses.response.kd import KDConfig


@dataclass
class AdaptiveConfig:
    """CTKD's settings; defaults from the authors' CIFAR-100 script (run_cifar_distill.sh)."""

    name: str = "adaptive"
    temperature: str = "global"       # global (one learned T) | instance (one T per sample)
    # T = min + (max - min) * sigmoid(theta): t_start = 1
    min_temperature: float = bounded(1.0, gt=0)
    max_temperature: float = bounded(21.0, gt=0)  # t_start + t_end = 1 + 20
    lambda_min: float = bounded(0.0, ge=0)  # reversal strength at the start (decay_max = 0)
    lambda_max: float = bounded(1.0, ge=0)  # ... reached after curriculum_epochs (decay_min = -1)
    curriculum_epochs: int = bounded(10, ge=1)  # cosine ramp length in epochs (decay_loops = 10)
    weighting: str = "none"           # per-sample KD weights: none (CTKD) | wsl | confidence


def validate(cfg, loss_cfg) -> None:
    if "kd" not in loss_cfg:
        raise ConfigError(f"algorithm=adaptive learns the temperature of kd, but loss="
                          f"{list(loss_cfg)} does not select it: use loss=kd or add it, "
                          "e.g. loss=[at,kd]")
    if loss_cfg.kd.temperature != KDConfig.temperature:
        raise ConfigError(f"loss.kd.temperature={loss_cfg.kd.temperature} has no effect under "
                          "algorithm=adaptive: CTKD learns the temperature within "
                          "[algorithm.min_temperature, algorithm.max_temperature]; drop the "
                          "override, or use algorithm=vanilla for a fixed temperature")
    if loss_cfg.kd.divergence != "forward_kl":
        raise ConfigError(f"loss.kd.divergence={loss_cfg.kd.divergence}: CTKD learns the "
                          "temperature of Hinton's KL; use loss.kd.divergence=forward_kl")
    if cfg.temperature not in TEMPERATURES:
        raise ConfigError(f"algorithm.temperature={cfg.temperature}: use one of "
                          f"{', '.join(TEMPERATURES)}")
    if cfg.weighting not in WEIGHTINGS:
        raise ConfigError(f"algorithm.weighting={cfg.weighting}: use one of "
                          f"{', '.join(WEIGHTINGS)}")
    if not 0 < cfg.min_temperature < cfg.max_temperature:
        raise ConfigError(f"algorithm.min_temperature={cfg.min_temperature}, algorithm."
                          f"max_temperature={cfg.max_temperature}: need 0 < min < max "
                          "(CTKD: 1, 21)")
    if not 0 <= cfg.lambda_min <= cfg.lambda_max:
        raise ConfigError(f"algorithm.lambda_min={cfg.lambda_min}, algorithm.lambda_max="
                          f"{cfg.lambda_max}: need 0 <= lambda_min <= lambda_max (CTKD: 0, 1)")


@register_algorithm
class Adaptive(Plugin):
    """kd's fixed temperature replaced by CTKD's learned one (an objective term of its own)."""

    name = "adaptive"
    config = AdaptiveConfig

    def check(self, cell) -> None:
        validate(cell.cfg.algorithm, cell.cfg.loss)

    def losses(self, cell, losses, student_probe, teacher_probe):
        cfg = cell.cfg
        losses["kd"] = AdaptiveKD(cfg.loss.kd, cfg.algorithm, cell.data.num_classes,
                                  cfg.trainer.epochs)
        return losses

    def result(self, cell, objective, result) -> dict:
        record = objective.losses["kd"].temperature_record()
        return {"temperature": record, "final_temperature": record[-1]["mean"] if record else None}

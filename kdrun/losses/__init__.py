"""Distillation losses, one file per method, grouped by knowledge type."""

from kdrun.losses.base import DistillationLoss, LossConfig, LossContext
from kdrun.losses.registry import (build_losses, ce_weight, check_outputs, loss_class,
                                   loss_classes, needs_teacher, register_loss, validate_losses)

__all__ = ["DistillationLoss", "LossConfig", "LossContext", "build_losses", "ce_weight",
           "check_outputs", "loss_class", "loss_classes", "needs_teacher", "register_loss",
           "validate_losses"]

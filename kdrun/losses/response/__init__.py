"""Response knowledge: methods that match the teacher's outputs (logits)."""

from kdrun.losses.response import ce, kd  # noqa: F401

"""Response knowledge: methods that match the teacher's outputs (logits), and the
teacher-free baselines of the same tables (ce, ls)."""

from kdrun.losses.response import ce, dist, dkd, kd, ls, lskd  # noqa: F401

"""Response knowledge: methods that match the teacher's outputs (logits), and the
teacher-free baselines of the same tables (ce, ls; their knowledge is "none").

Every module here is imported by kdrun.losses.registry: a new file is a new method."""

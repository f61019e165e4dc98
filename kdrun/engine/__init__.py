"""The engine: training loop, evaluation, checkpoints and resume."""

"""Tracking: W&B, the local metrics.jsonl and result.json."""

"""Schemes: offline (fixed teacher); online and self come next."""

"""Caches shared by the cells of a sweep: trained teachers (and teacher outputs)."""

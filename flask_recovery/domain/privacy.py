"""Erasure and export of a client's data (placeholder until issue 7 lands)."""

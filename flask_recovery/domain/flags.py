"""Flags for the next visit (placeholder until issue 5 lands)."""

"""Rate limits on the public token routes (placeholder until issue 7 lands)."""

from __future__ import annotations

from flask import Flask


def init_rate_limits(app: Flask) -> None:
    """Set up rate limits for ``app`` (placeholder: none yet)."""

"""The KPI journal pages (placeholder until issue 6 lands)."""

from __future__ import annotations

from flask import Blueprint


def register_journal(bp: Blueprint) -> None:
    """Add the journal's routes to the ``recovery`` blueprint (placeholder: none yet)."""

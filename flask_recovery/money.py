"""Money as a reader writes it: minor units formatted for the locale in force.

A leaf the rules may use (it imports only Babel, Flask and the extension's own i18n and
config), so a refusal can say "cannot be more than the visit's price (2 800,00 ₽)" instead
of the raw ``280000``. Pages and mail format money the same way.
"""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision
from flask import current_app, has_app_context

from .config import key
from .i18n import current_locale


def currency() -> str:
    """``RECOVERY_CURRENCY`` (``EUR`` outside an app context)."""
    return current_app.config[key("CURRENCY")] if has_app_context() else "EUR"


def to_major(amount: int, code: str | None = None) -> Decimal:
    """Minor units as a :class:`~decimal.Decimal` of major units (``150000`` -> ``1500.00``)."""
    return Decimal(amount).scaleb(-get_currency_precision(code or currency()))


def format_money(amount: int | None, code: str | None = None, locale: str | None = None) -> str:
    """Minor units as ``locale`` (default: the one in force) writes money:
    ``1 500,00 ₽`` in Russian, ``€1,500.00`` in English; ``""`` for ``None``."""
    if amount is None:
        return ""
    code = code or currency()
    return format_currency(to_major(amount, code), code, locale=locale or current_locale())

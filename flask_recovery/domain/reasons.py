"""The reason a colleague reads: the note the flag of an incident carries to the next visit.

Composed in the current language from the incident and the remedies granted for it
(:func:`compose_reason`), and composed again when a remedy is granted later
(:func:`refresh_reason`, a receiver of ``compensation_granted``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision
from flask import current_app
from flask_babel import get_locale
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import signals
from ..config import key
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Compensation, Flag, Incident
from ..vocabulary import category_label, severity_label
from .badges import forget_cached_flags

#: What to do for the client next time, by incident category (a generic line for the others).
_ATTENTION = {
    "late": _l("Start on time; greet the client by name and offer a compliment."),
    "result": _l("Book the client with the best master and check the result together before the client leaves."),
}
_ATTENTION_DEFAULT = _l("Greet the client by name and offer a compliment.")


def _money(amount: int) -> str:
    currency = current_app.config[key("CURRENCY")]
    locale = str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])
    return format_currency(Decimal(amount).scaleb(-get_currency_precision(currency)), currency, locale=locale)


def _remedy(compensation: Compensation) -> str:
    kind = compensation.kind
    if kind == "gift":
        return _("a compliment worth %(amount)s", amount=_money(compensation.amount))
    if kind == "discount":
        return _("%(amount)s off the next visit", amount=_money(compensation.amount))
    if kind == "percent_discount":
        return _("%(percent)s%% off the next visit", percent=compensation.percent)
    if kind == "redo":
        return _("a free redo")
    return _("%(amount)s refunded", amount=_money(compensation.amount))


def _snippet(text: str | None, limit: int = 120) -> str:
    line = " ".join((text or "").split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line.rstrip(" .;:")


def compose_reason(session: Session, incident: Incident) -> str:
    """The note for her next visit, in the current language, from the incident and remedies.

    ``Last visit: Late start (major): master started 25 minutes late. Given: 15% off the
    next visit. Start on time; greet the client by name and offer a compliment.`` A conduct
    incident gives a warning without the conduct note itself.
    """
    severity = severity_label(incident.severity).lower()
    if incident.conduct:
        return _(
            "Conduct warning: abuse of staff on the client's last visit (%(severity)s). Ask the manager on duty to be "
            "present. No VIP treatment.",
            severity=severity,
        )
    what = _("Last visit: %(category)s (%(severity)s)", category=category_label(incident.category), severity=severity)
    snippet = _snippet(incident.description)
    parts = [f"{what}: {snippet}." if snippet else f"{what}."]
    granted = session.scalars(
        select(Compensation)
        .where(Compensation.incident_id == incident.id, Compensation.status == "granted")
        .order_by(Compensation.id)
    ).all()
    if granted:
        parts.append(_("Given: %(remedies)s.", remedies="; ".join(_remedy(c) for c in granted)))
    parts.append(str(_ATTENTION.get(incident.category, _ATTENTION_DEFAULT)))
    return " ".join(parts)


def refresh_reason(session: Session, incident_id: int) -> int:
    """Recompose the reason of the incident's active flags (after a remedy was granted).

    Returns how many flags changed. Works in the caller's transaction (flushes only).
    """
    incident = session.get(Incident, incident_id)
    if incident is None or incident.conduct:
        return 0
    reason = compose_reason(session, incident)
    result = session.execute(
        update(Flag)
        .where(Flag.incident_id == incident_id, Flag.source == "incident", Flag.status == "active")
        .values(reason=reason)
        .execution_options(synchronize_session=False)
    )
    forget_cached_flags()
    return result.rowcount


def _on_compensation_granted(sender: Any, compensation: Compensation | None = None, **extra: Any) -> None:
    """Receiver of ``compensation_granted``: the remedy joins the flag's reason."""
    from ..proxies import get_recovery

    session = get_recovery().session
    # a savepoint: should the refresh fail, the grant in the same transaction stays intact
    with session.begin_nested():
        refresh_reason(session, compensation.incident_id)


signals.compensation_granted.connect(_on_compensation_granted)

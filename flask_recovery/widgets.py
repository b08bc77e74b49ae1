"""Template helpers a host drops into its own pages: ``recovery_widget(booking_id)``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, get_currency_precision
from flask import current_app, render_template, request
from flask_babel import get_locale
from markupsafe import Markup

from .config import category_keys, key, permitted
from .domain.audit import history_for_booking
from .domain.compensations import WARN_SHARE, authority_summary, compensations_for_booking, suggestions
from .domain.incidents import client_summary, incidents_for_booking
from .entities import Booking, Staff
from .errors import NotAuthenticated, NotFound, RecoveryError
from .extension import get_recovery
from .forms import ActionForm, CompensationForm, IncidentForm
from .i18n import gettext as _
from .vocabulary import (
    action_label,
    category_label,
    compensation_status_label,
    kind_label,
    script_for,
    severity_label,
    status_label,
)


def _locale() -> str:
    return str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])


def format_money(amount: int | None, currency: str | None = None) -> str:
    """Minor units as the page's locale writes money: ``1 500,00 ₽`` / ``€1,500.00``."""
    if amount is None:
        return ""
    currency = currency or current_app.config[key("CURRENCY")]
    digits = get_currency_precision(currency)
    return format_currency(Decimal(amount).scaleb(-digits), currency, locale=_locale())


def local_time(value: datetime | None) -> str:
    """A datetime in ``RECOVERY_TIMEZONE``, written the locale's short way."""
    if value is None:
        return ""
    tz = ZoneInfo(current_app.config[key("TIMEZONE")])
    return format_datetime(value.astimezone(tz), "short", tzinfo=tz, locale=_locale())


def minutes_between(start: datetime | None, end: datetime | None) -> int | None:
    """Whole minutes from ``start`` to ``end`` (never negative), or ``None``."""
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() // 60))


def widget_context(
    booking: Booking,
    staff: Staff | None,
    *,
    standalone: bool,
    form: IncidentForm | None = None,
    comp_form: CompensationForm | None = None,
    comp_form_incident: int | None = None,
) -> dict[str, Any]:
    """Everything the widget template needs; raises 401/404 like the API."""
    session = get_recovery().session
    config = current_app.config
    if staff is None:
        raise NotAuthenticated(_("Log in as a staff member first."))
    if not staff.can_see(booking):
        raise NotFound(_("No such booking."))
    if form is None:
        form = IncidentForm(config, formdata=None)
    form.scope(booking.id)
    if standalone and request.method == "GET":
        chosen = request.args.get("category")
        if chosen in category_keys(config) and not form.category.data:
            form.category.data = chosen
    if not standalone or not form.next.data:
        form.next.data = _here() if not standalone else None
    categories = category_keys(config)
    earlier_count, earlier = client_summary(session, booking.client_id, exclude_booking_id=booking.id)
    incidents = incidents_for_booking(session, booking.id)
    compensations: dict[int, list] = {}
    for item in compensations_for_booking(session, booking.id):
        compensations.setdefault(item.incident_id, []).append(item)
    can_compensate = permitted(config, "compensation.request", staff.role)
    grant_forms = {}
    remedies = {}
    for incident in incidents:
        if can_compensate and not incident.conduct and incident.status != "closed":
            posted = comp_form if comp_form is not None and comp_form_incident == incident.id else None
            grant_forms[incident.id] = (posted or CompensationForm(formdata=None)).scope(incident.id)
            remedies[incident.id] = suggestions(session, incident, booking)
    return {
        "compensations": compensations,
        "grant_forms": grant_forms,
        "remedies": remedies,
        "authority": authority_summary(session, staff) if can_compensate else None,
        "kind_label": kind_label,
        "compensation_status_label": compensation_status_label,
        "warn_share": WARN_SHARE,
        "record_currency": config[key("CURRENCY")],
        "earlier_count": earlier_count,
        "earlier": earlier,
        "booking": booking,
        "staff": staff,
        "incidents": incidents,
        "history": history_for_booking(session, booking.id),
        "show_conduct": permitted(config, "conduct.view", staff.role),
        "local_time": local_time,
        "minutes_between": minutes_between,
        "form": form,
        "action_form": ActionForm(formdata=None),
        "standalone": standalone,
        "here": _here(),
        "scripts": [(c, category_label(c), script_for(c)) for c in categories],
        "selected_category": form.category.data or "",
        "can_record": permitted(config, "incident.record", staff.role),
        "can_resolve": permitted(config, "incident.resolve", staff.role),
        "can_reopen": permitted(config, "incident.reopen", staff.role),
        "category_label": category_label,
        "severity_label": severity_label,
        "status_label": status_label,
        "action_label": action_label,
        "script_for": script_for,
        "format_money": format_money,
    }


def _here() -> str:
    """The current page as a local path with its query, to come back to after a POST."""
    path = request.full_path if request.query_string else request.path
    return path


def render_widget(booking_id: Any) -> Markup:
    """``{{ recovery_widget(booking_id) }}``: the checkout widget for the host's page.

    Renders nothing when no staff member is logged in, and a short notice when the
    booking is unknown or outside the staff member's location.
    """
    recovery = get_recovery()
    staff = recovery.current_staff()
    if staff is None:
        return Markup("")
    if isinstance(booking_id, Booking):
        booking_id = booking_id.id
    try:
        booking = recovery.load_booking(booking_id)
        context = widget_context(booking, staff, standalone=False)
    except RecoveryError as error:
        return Markup(render_template("recovery/_widget_error.html", error=error))
    return Markup(render_template("recovery/_widget.html", **context))

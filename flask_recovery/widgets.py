"""Template helpers a host drops into its own pages: ``recovery_widget(booking_id)`` and
``recovery_badge(booking)``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, get_currency_precision
from flask import current_app, g, render_template, request, url_for
from flask_babel import get_locale
from markupsafe import Markup

from .config import category_keys, key, permitted
from .domain import flags
from .domain.audit import history_for_booking
from .domain.compensations import WARN_SHARE, authority_summary, compensations_for_booking, suggestions
from .domain.incidents import client_summary, incidents_for_booking
from .entities import Booking, Staff
from .errors import NotAuthenticated, NotFound, RecoveryError
from .extension import get_recovery
from .forms import AcknowledgeForm, ActionForm, CompensationForm, IncidentForm, ReasonForm
from .i18n import gettext as _
from .i18n import lazy_gettext as _l
from .vocabulary import (
    action_label,
    category_label,
    compensation_status_label,
    kind_label,
    script_for,
    severity_label,
    status_label,
)

#: The badge's short, visible word for each flag type.
FLAG_BADGE_LABELS = {"vip": _l("VIP"), "conduct": _l("Warning")}
#: The heading of a flag on the widget and the client page.
FLAG_TITLES = {"vip": _l("Extra attention"), "conduct": _l("Conduct warning")}
#: What became of a flag.
FLAG_STATE_LABELS = {
    "active": _l("Active"),
    "expired": _l("Expired"),
    "used": _l("Used up by a visit"),
    "lifted": _l("Lifted"),
    "void": _l("Erased"),
}
#: History lines of the flag and hold actions (the rest come from the vocabulary).
FLAG_ACTION_LABELS = {
    "flag.set": _l("Flag set for the next visit"),
    "flag.acknowledged": _l("Flag marked as seen"),
    "flag.used": _l("Flag used up by a visit"),
    "flag.lifted": _l("Flag lifted"),
    "hold.set": _l("Online booking paused"),
    "hold.lifted": _l("Online booking allowed again"),
}


#: The client page's words for a visit's status, a follow-up and a client's answer.
VISIT_STATUS_LABELS = {
    "booked": _l("booked"),
    "completed": _l("took place"),
    "cancelled": _l("cancelled"),
    "no_show": _l("no-show"),
}
FOLLOWUP_LABELS = {"checkin": _l("Check-in mail"), "reminder": _l("Reminder")}
FOLLOWUP_STATUS_LABELS = {
    "scheduled": _l("planned"),
    "sending": _l("sending"),
    "sent": _l("sent"),
    "failed": _l("failed"),
    "cancelled": _l("not sent"),
}
ANSWER_LABELS = {"good": _l("she answered: all good"), "not_right": _l("she answered: still not right")}


def _labeller(labels: dict):
    def label(value: str) -> str:
        return str(labels.get(value, value))

    return label


visit_status_label = _labeller(VISIT_STATUS_LABELS)
followup_label = _labeller(FOLLOWUP_LABELS)
followup_status_label = _labeller(FOLLOWUP_STATUS_LABELS)
answer_label = _labeller(ANSWER_LABELS)


def flag_label(flag_type: str) -> str:
    """The badge's visible word for a flag type (``VIP``, ``Warning``)."""
    return str(FLAG_BADGE_LABELS.get(flag_type, flag_type))


def flag_title(flag_type: str) -> str:
    """The heading of a flag (``Extra attention``, ``Conduct warning``)."""
    return str(FLAG_TITLES.get(flag_type, flag_type))


def flag_state_label(state: str) -> str:
    """What became of a flag, translated."""
    return str(FLAG_STATE_LABELS.get(state, state))


def history_label(action: str) -> str:
    """The translated label of any audit action, flags and holds included."""
    if action in FLAG_ACTION_LABELS:
        return str(FLAG_ACTION_LABELS[action])
    return action_label(action)


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
    try:
        return format_datetime(value.astimezone(tz), "short", tzinfo=tz, locale=_locale())
    except (OverflowError, ValueError):  # the edge of the calendar (year 1 or 9999) in a shifted zone
        return value.isoformat(sep=" ", timespec="minutes")


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
    client_flags = flags.active_flags(session, booking.client_id)
    client_flags.sort(key=lambda f: f.type != "conduct")
    show_conduct = permitted(config, "conduct.view", staff.role)
    return {
        "flags_now": [f for f in client_flags if flags.applies(f, booking.id, booking.ends_at)],
        "flags_next": [f for f in client_flags if not flags.applies(f, booking.id, booking.ends_at)],
        "hold": flags.active_hold(session, booking.client_id),
        "ack_form": AcknowledgeForm(formdata=None),
        "lift_form": ReasonForm(formdata=None),
        "can_acknowledge": permitted(config, "flag.acknowledge", staff.role),
        "can_manage_flags": permitted(config, "flag.manage", staff.role),
        "client_url": (
            url_for("recovery.client", client_id=booking.client_id, booking=booking.id)
            if permitted(config, "client.view", staff.role)
            else None
        ),
        "shown_reason": lambda flag: flags.shown_reason(flag, show_conduct),
        "flag_title": flag_title,
        "flag_label": flag_label,
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
        "show_conduct": show_conduct,
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
        "action_label": history_label,
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


_EMPTY = Markup("")


class _Viewer:
    """Who looks at this request's badges, worked out once (at the first badge)."""

    __slots__ = ("staff", "location", "show_conduct", "can_open", "session", "rendering")

    def __init__(self) -> None:
        recovery = get_recovery()
        staff = recovery.current_staff()
        self.staff = staff
        self.location = staff.location if staff is not None else None
        self.session = recovery.session
        self.rendering: dict[str, Any] | None = None  # filled at the first badge that shows
        if staff is not None:
            config = current_app.config
            self.show_conduct = permitted(config, "conduct.view", staff.role)
            self.can_open = permitted(config, "client.view", staff.role)

    def render(self, kind: str, reason: str, client_id: str, booking_id: str) -> Markup:
        """The badge's HTML (the first one of the request links the stylesheet too)."""
        first = self.rendering is None
        if first:
            self.rendering = {
                "macro": current_app.jinja_env.get_template("recovery/_badge.html").module.badge,
                # "/recovery/clients/" once; each badge adds its client (no url_for per badge)
                "prefix": url_for("recovery.client", client_id="x")[:-1] if self.can_open else None,
                "labels": {k: (flag_label(k), flag_title(k)) for k in flags.FLAG_TYPES},
            }
        label, title = self.rendering["labels"][kind]
        prefix = self.rendering["prefix"]
        url = f"{prefix}{quote(client_id, safe='')}?booking={quote(booking_id, safe='')}" if prefix else None
        html = self.rendering["macro"](kind, label, reason or title, url)
        if first:
            stylesheet = url_for("recovery.static", filename="recovery.css")
            return Markup('<link rel="stylesheet" href="{}">').format(stylesheet) + html
        return html


def render_badge(booking: Any) -> Markup:
    """``{{ recovery_badge(booking) }}``: the flag badge for a host's day list or calendar.

    ``booking`` is a ``Booking``, a booking id (the host's loader is called), or any
    object of the host's with ``id``, ``client_id`` and a timezone-aware ``ends_at``
    (``location`` too if staff have locations), e.g. its own row: no ``Booking`` to build.
    Renders nothing without a logged-in staff member, for a booking outside her location,
    or when the client has no active flag for this booking. Otherwise a link to the
    client's history whose root carries ``data-recovery-flag="vip"`` or ``"conduct"``
    (conduct wins), with the reason in ``title`` (hover) and in visually hidden text
    (screen readers) that shows on keyboard focus. The first badge of a request loads the
    flags of every client at once (unless :meth:`Recovery.flags_for_bookings` did), so a
    page of 200 badges costs one query.
    """
    cache = g.get("_recovery_badges") or flags.badge_cache()
    viewer = cache.viewer
    if viewer is None:
        viewer = cache.viewer = _Viewer()
    if viewer.staff is None:
        return _EMPTY
    if not (isinstance(booking, Booking) or hasattr(booking, "client_id")):
        ref = cache.refs.get(str(booking))
        if ref is None:
            try:
                ref = get_recovery().load_booking(booking)
            except NotFound:
                return _EMPTY
        booking = ref
    # the fast path first: most clients of a day list have no flag
    client_id = booking.client_id if isinstance(booking.client_id, str) else str(booking.client_id)
    found = cache.by_client.get(client_id)
    if found is None:
        found = cache.flags_of(viewer.session, client_id)
    if not found:
        return _EMPTY
    if viewer.location is not None and getattr(booking, "location", None) != viewer.location:
        return _EMPTY
    booking_id, ends_at = str(booking.id), booking.ends_at
    if ends_at is not None and (ends_at.tzinfo is None or ends_at.utcoffset() is None):
        raise ValueError(f"recovery_badge: ends_at of booking {booking_id!r} must be timezone-aware")
    shown = [f for f in found if flags.applies(f, booking_id, ends_at)]
    if not shown:
        return _EMPTY
    kind = flags.display_type(shown)
    reasons: list[str] = []
    for flag in shown:
        reason = flags.shown_reason(flag, viewer.show_conduct)
        if flag.type == kind and reason and reason not in reasons:
            reasons.append(reason)
    return viewer.render(kind, " · ".join(reasons), client_id, booking_id)


def _client_of(item: Any) -> str | None:
    """The client id of a ``Booking`` or a host row, ``None`` for a bare id."""
    if isinstance(item, Booking):
        return item.client_id
    if hasattr(item, "client_id"):
        return str(item.client_id)
    return None


class BadgeMap(dict):
    """Badges by booking id: ``badges[booking.id]`` (an int id works too); ``""`` for none."""

    def __missing__(self, key: Any) -> Markup:
        if not isinstance(key, str):
            return self.get(str(key), _EMPTY)
        return _EMPTY


def render_badges(bookings: Any) -> BadgeMap:
    """``{% set badges = recovery_badges(bookings) %}`` … ``{{ badges[booking.id] }}``.

    The badges of a whole list at once (``Booking`` objects, the host's own rows with
    ``id``, ``client_id`` and ``ends_at``, or ids): one query, and no call per row for
    the many bookings without a flag. Each badge is the one :func:`render_badge` draws.
    """
    cache = g.get("_recovery_badges") or flags.badge_cache()
    if cache.viewer is None:
        cache.viewer = _Viewer()
    badges = BadgeMap()
    if cache.viewer.staff is None:
        return badges
    items = [(item, _client_of(item)) for item in bookings]
    if not cache.complete and any(c is None or c not in cache.by_client for _, c in items):
        cache.load_all(cache.viewer.session)  # one query for every client of the list
    by_client = cache.by_client
    for item, client_id in items:
        if client_id is not None and not by_client.get(client_id):
            continue  # the common case: no flag, no work
        html = render_badge(item)
        if html:
            badges[str(item.id) if hasattr(item, "id") else str(item)] = html
    return badges

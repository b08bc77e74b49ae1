"""Template helpers a host drops into its own pages: ``recovery_widget(booking_id)`` and
``recovery_badge(booking)``."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from decimal import Decimal
from itertools import compress
from operator import attrgetter
from typing import Any
from urllib.parse import quote
from uuid import UUID
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, get_currency_precision
from flask import current_app, g, render_template, request, url_for
from flask_babel import get_locale
from markupsafe import Markup, escape

from .config import category_keys, key, permitted
from .domain import flags, holds
from .domain.audit import history_for_booking
from .domain.badges import BadgeCache, badge_cache
from .domain.compensations import WARN_SHARE, authority_summary, compensations_for_booking, suggestions
from .domain.incidents import client_summary, incidents_for_booking
from .entities import Booking, Staff, normalize_datetime
from .errors import NotAuthenticated, NotFound, RecoveryError
from .forms import (
    AcknowledgeForm,
    ActionForm,
    CompensationForm,
    FormState,
    IncidentForm,
    ReasonForm,
    booking_scope,
    scope_slug,
    take_state,
)
from .i18n import gettext as _
from .i18n import lazy_gettext as _l
from .i18n import staff_language
from .proxies import get_recovery
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
ANSWER_LABELS = {"good": _l("the client answered: all good"), "not_right": _l("the client answered: still not right")}


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
    state: FormState | None = None,
) -> dict[str, Any]:
    """Everything the widget template needs; raises 401/404 like the API.

    ``state`` is what the last POST left for this booking (messages, the refused form,
    what was typed); by default the one kept in the session, taken once
    (:func:`~flask_recovery.forms.take_state`).
    """
    session = get_recovery().session
    config = current_app.config
    if staff is None:
        raise NotAuthenticated(_("Log in as a staff member first."))
    if not staff.can_see(booking):
        raise NotFound(_("No such booking."))
    if state is None:
        state = take_state(booking_scope(booking.id)) or FormState()
    here = _return_path(booking, standalone)
    if state.form == "incident":
        form = IncidentForm(config, formdata=None, data=_present(state.typed))
        for name, errors in state.errors.items():
            if name in form:
                form[name].errors = list(errors)
    else:
        form = IncidentForm(config, formdata=None)
    form.scope(booking.id)
    if standalone and request.method == "GET" and state.form != "incident":
        chosen = request.args.get("category")
        if chosen in category_keys(config) and not form.category.data:
            form.category.data = chosen
    form.next.data = here
    slug = scope_slug(booking.id)
    record_anchor = f"recovery-record-{slug}"
    categories = category_keys(config)
    earlier_count, earlier = client_summary(session, booking.client_id, exclude_booking_id=booking.id)
    incidents = incidents_for_booking(session, booking.id)
    compensations: dict[int, list] = {}
    for item in compensations_for_booking(session, booking.id):
        compensations.setdefault(item.incident_id, []).append(item)
    can_compensate = permitted(config, "compensation.request", staff.role)
    grant_forms = {}
    remedies = {}
    anchors = {WIDGET_ANCHOR, record_anchor}
    for incident in incidents:
        anchors.add(f"incident-{incident.id}")
        if can_compensate and not incident.conduct and incident.status != "closed":
            anchors.add(f"recovery-grant-{incident.id}")
            if state.form == f"grant-{incident.id}":
                cform = CompensationForm(formdata=None, data=_present(state.typed))
                for name, errors in state.errors.items():
                    if name in cform:
                        cform[name].errors = list(errors)
            else:
                cform = CompensationForm(formdata=None)
            cform.next.data = here
            grant_forms[incident.id] = cform.scope(incident.id)
            remedies[incident.id] = suggestions(session, incident, booking)
    client_flags = flags.active_flags(session, booking.client_id)
    client_flags.sort(key=lambda f: f.type != "conduct")
    show_conduct = permitted(config, "conduct.view", staff.role)
    flags_now = [f for f in client_flags if flags.applies(f, booking.id, booking.ends_at)]
    anchors.update(f"flag-{f.id}" for f in flags_now)
    return {
        "flags_now": flags_now,
        "flags_next": [f for f in client_flags if not flags.applies(f, booking.id, booking.ends_at)],
        "hold": holds.active_hold(session, booking.client_id),
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
        "show_hold_reason": holds.can_read_hold_reason(staff),
        "local_time": local_time,
        "minutes_between": minutes_between,
        "form": form,
        "record_anchor": record_anchor,
        "aria": aria,
        "state": state,
        "messages": state.messages_at(anchors, WIDGET_ANCHOR),
        "action_form": ActionForm(formdata=None),
        "standalone": standalone,
        "here": here,
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


def aria(field: Any, hint: str | None = None) -> dict[str, str]:
    """The ARIA attributes of a form field: ``aria-invalid`` when it has a mistake, and
    ``aria-describedby`` naming its hint and its error text (``<field id>-error``)."""
    described = [hint] if hint else []
    attributes: dict[str, str] = {}
    if field.errors:
        described.append(f"{field.id}-error")
        attributes["aria-invalid"] = "true"
    if described:
        attributes["aria-describedby"] = " ".join(described)
    return attributes


#: The id of the widget's root element: where its general messages show.
WIDGET_ANCHOR = "recovery-widget"


def _present(typed: dict[str, Any]) -> dict[str, Any]:
    """Typed values for a form's ``data=`` (a field left out keeps its default)."""
    return {name: value for name, value in typed.items() if value is not None}


def _here() -> str:
    """The current page as a local path with its query (and the app's mount point), to
    come back to after a POST."""
    path = request.full_path if request.query_string else request.path
    return request.script_root + path


def _return_path(booking: Booking, standalone: bool) -> str:
    """Where the widget's forms come back to: this page, or the booking page when the
    extension's own page is drawn in answer to a POST (a mistake shown without a redirect)."""
    if standalone and request.method != "GET":
        return url_for("recovery.booking", booking_id=booking.id)
    return _here()


def render_widget(booking_id: Any) -> Markup:
    """``{{ recovery_widget(booking_id) }}``: the checkout widget for the host's page.

    Renders nothing when no staff member is logged in, and a short notice when the
    booking is unknown or outside the staff member's location. It never breaks the host's
    page: when the booking loader fails or returns something unusable (or anything else
    goes wrong drawing it), a small box says the panel could not load the booking and the
    cause is logged with its traceback (``current_app.logger.exception``).
    """
    try:
        recovery = get_recovery()
        staff = recovery.current_staff()
    except Exception:
        current_app.logger.exception("recovery_widget(%r): the staff loader failed", booking_id)
        return _widget_error(None)
    if staff is None:
        return Markup("")
    if isinstance(booking_id, Booking):
        booking_id = booking_id.id
    with staff_language(staff):  # the widget in her language; the host's page keeps its own
        try:
            booking = recovery.load_booking(booking_id)
            context = widget_context(booking, staff, standalone=False)
            return Markup(render_template("recovery/_widget.html", **context))
        except NotFound as error:
            return _widget_error(error)
        except RecoveryError as error:  # e.g. naive times refused by RECOVERY_NAIVE_DATETIMES = "error"
            current_app.logger.warning("recovery_widget(%r): %s", booking_id, error.message)
            return _widget_error(error)
        except Exception:
            current_app.logger.exception(
                "recovery_widget(%r): the service-recovery panel could not be drawn", booking_id
            )
            return _widget_error(None)


def _widget_error(error: RecoveryError | None) -> Markup:
    """The widget's small error box (``recovery/_widget_error.html``); never raises."""
    try:
        return Markup(render_template("recovery/_widget_error.html", error=error))
    except Exception:
        current_app.logger.exception("recovery/_widget_error.html could not be drawn")
        return Markup('<section class="recovery-widget recovery-widget--error" role="status"></section>')


_EMPTY = Markup("")

#: The badge template a host may override (keep the macro ``badge(kind, label, reason, url)``).
_BADGE_TEMPLATE = "recovery/_badge.html"
#: The packaged one. While the host has not overridden it, badges are drawn from
#: :func:`_badge_parts` (the same HTML, byte for byte, as tests check; no macro call per badge).
_OWN_BADGE_TEMPLATE = os.path.normcase(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "recovery", "_badge.html")
)
#: The badge's words and fixed HTML by locale (and link or not): translated once per process.
_BADGE_WORDS: dict[tuple[str, bool], tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str, str]]]] = {}


def _badge_parts(kind: str, label: str, link: bool) -> tuple[str, str, str]:
    """The fixed HTML around a badge's url and reason, as ``_badge.html`` writes it:
    ``head + url + '" title="' + reason + middle + reason + tail``, or
    ``head + reason + middle + reason + tail`` without a link."""
    kind_html, label_html = escape(kind), escape(label)
    icon = "⚠" if kind == "conduct" else "★"
    root = f'class="recovery-badge recovery-badge-{kind_html}" data-recovery-flag="{kind_html}"'
    head = f'<a {root} href="' if link else f'<span {root} tabindex="0" title="'
    middle = (
        f'"><span class="recovery-badge-icon" aria-hidden="true">{icon}</span> <span class="recovery-badge-label">'
        f'{label_html}<span class="recovery-visually-hidden">:</span></span> <span class="recovery-badge-reason">'
    )
    return head, middle, "</span></a>" if link else "</span></span>"


def _badge_words(link: bool) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str, str]]]:
    """Labels, titles and fixed HTML of the badge in this request's locale."""
    locale = str(get_locale())
    words = _BADGE_WORDS.get((locale, link))
    if words is None:
        labels = {kind: flag_label(kind) for kind in flags.FLAG_TYPES}
        titles = {kind: flag_title(kind) for kind in flags.FLAG_TYPES}
        parts = {kind: _badge_parts(kind, label, link) for kind, label in labels.items()}
        words = _BADGE_WORDS[locale, link] = (labels, titles, parts)
    return words


def _is_packaged(template: Any) -> bool:
    """Whether ``template`` is the extension's own ``_badge.html`` (not a host's override)."""
    filename = template.filename
    return filename is not None and os.path.normcase(os.path.abspath(filename)) == _OWN_BADGE_TEMPLATE


def _quoted(value: str) -> str:
    """``value`` as one URL path segment or query value (letters and digits need nothing)."""
    return value if value.isascii() and value.isalnum() else quote(value, safe="")


class _Viewer:
    """Who looks at this request's badges, worked out once (at the first badge)."""

    __slots__ = ("staff", "location", "show_conduct", "can_open", "session", "words", "prefix", "macro")

    def __init__(self) -> None:
        recovery = get_recovery()
        staff = recovery.current_staff()
        self.staff = staff
        self.location = staff.location if staff is not None else None
        self.session = recovery.session
        self.words: tuple | None = None  # filled at the first badge that shows
        if staff is not None:
            config = current_app.config
            self.show_conduct = permitted(config, "conduct.view", staff.role)
            self.can_open = permitted(config, "client.view", staff.role)

    def draw(self, booking: Any, client_id: str, found: tuple) -> Markup:
        """The badge of ``booking`` (a ``Booking`` or host row) whose client has the active
        flags ``found``; empty outside the viewer's location or when none is for it."""
        if self.location is not None and getattr(booking, "location", None) != self.location:
            return _EMPTY
        try:
            booking_id, ends_at = booking.id, booking.ends_at
        except AttributeError:
            return _unusable(booking, "id" if not hasattr(booking, "id") else "ends_at")
        if booking_id.__class__ is not str:
            booking_id = str(booking_id)
        if ends_at is not None:
            if not isinstance(ends_at, datetime):
                return _unusable(booking, "ends_at", "is not a datetime")
            if ends_at.utcoffset() is None:  # a naive time: read per RECOVERY_NAIVE_DATETIMES
                try:
                    ends_at = normalize_datetime(ends_at, "ends_at")
                except RecoveryError:
                    return _unusable(booking, "ends_at", "has no time zone (RECOVERY_NAIVE_DATETIMES is 'error')")
        applies = flags.applies
        if len(found) == 1:  # the common case: one flag, and its reason
            flag = found[0]
            if not applies(flag, booking_id, ends_at):
                return _EMPTY
            kind = flags.display_type(found)
            return self.render(kind, flags.shown_reason(flag, self.show_conduct) or "", client_id, booking_id)
        shown = [flag for flag in found if applies(flag, booking_id, ends_at)]
        if not shown:
            return _EMPTY
        kind = flags.display_type(shown)
        reasons: list[str] = []
        for flag in shown:
            if flag.type == kind:
                reason = flags.shown_reason(flag, self.show_conduct)
                if reason and reason not in reasons:
                    reasons.append(reason)
        return self.render(kind, " · ".join(reasons), client_id, booking_id)

    def render(self, kind: str, reason: str, client_id: str, booking_id: str) -> Markup:
        """The badge's HTML (the first one of the request links the stylesheet too)."""
        first = self.words is None
        if first:
            self.words = _badge_words(self.can_open)
            # "/recovery/clients/" once; each badge adds its client (no url_for per badge)
            self.prefix = url_for("recovery.client", client_id="x")[:-1] if self.can_open else None
            template = current_app.jinja_env.get_template(_BADGE_TEMPLATE)
            self.macro = None if _is_packaged(template) else template.module.badge  # the host's own badge
        labels, titles, parts = self.words
        reason = reason or titles[kind]
        prefix = self.prefix
        if self.macro is not None:
            url = f"{prefix}{_quoted(client_id)}?booking={_quoted(booking_id)}" if prefix is not None else None
            html = self.macro(kind, labels[kind], reason, url)
        else:
            head, middle, tail = parts[kind]
            text = escape(reason)
            if prefix is None:
                html = Markup("".join((head, text, middle, text, tail)))
            else:  # the quoted ids need no HTML escaping; the prefix is escaped as the template would
                url = (escape(prefix), _quoted(client_id), "?booking=", _quoted(booking_id), '" title="')
                html = Markup("".join((head, *url, text, middle, text, tail)))
        if first:  # the stylesheet with the first badge of the request
            stylesheet = escape(url_for("recovery.static", filename="recovery.css"))
            return Markup("".join(('<link rel="stylesheet" href="', stylesheet, '">', html)))
        return html


def _viewer(cache: BadgeCache) -> _Viewer:
    viewer = cache.viewer
    if viewer is None:
        viewer = cache.viewer = _Viewer()
    return viewer


def _booking_of(cache: BadgeCache, booking_id: Any) -> Any:
    """What a bare booking id stands for: the ref ``flags_for_bookings`` kept, or the host's
    booking (its loader); ``None`` when unknown or when the loader fails (logged)."""
    ref = cache.refs.get(str(booking_id))
    if ref is not None:
        return ref
    try:
        return get_recovery().load_booking(booking_id)
    except NotFound:
        return None
    except Exception as error:  # a broken loader must not break the host's list
        _log_once(
            ("loader", type(error).__name__),
            "recovery_badge(%r): the booking loader failed (%s: %s); no badge is drawn "
            "(logged once per process for this kind of failure)",
            booking_id,
            type(error).__name__,
            error,
            exc_info=True,
        )
        return None


#: The reasons already logged by the badge (each once per process).
_LOGGED: set[tuple] = set()
_LOGGED_LOCK = threading.Lock()


def _log_once(reason: tuple, message: str, *args: Any, exc_info: bool = False) -> None:
    """Log a warning about the badge once per process for ``reason``."""
    with _LOGGED_LOCK:
        if reason in _LOGGED:
            return
        _LOGGED.add(reason)
    current_app.logger.warning(message, *args, exc_info=exc_info)


def _is_bare_id(value: Any) -> bool:
    """Whether ``value`` is a booking id rather than a row (strings, integers, UUIDs)."""
    return isinstance(value, str | int | UUID) and not isinstance(value, bool)


def _unusable(row: Any, attribute: str, problem: str = "is missing") -> Markup:
    """No badge for a host row the badge cannot use, and a warning naming what is wrong
    (once per process per row type and attribute)."""
    kind = type(row)
    _log_once(
        ("row", kind.__module__, kind.__qualname__, attribute, problem),
        "recovery_badge: a %s.%s row's %r %s, so it gets no badge. Pass a flask_recovery.Booking, a "
        "booking id, or a row with id, client_id and a datetime ends_at (logged once per process).",
        kind.__module__,
        kind.__qualname__,
        attribute,
        problem,
    )
    return _EMPTY


def render_badge(booking: Any) -> Markup:
    """``{{ recovery_badge(booking) }}``: the flag badge for a host's day list or calendar.

    ``booking`` is a ``Booking``, a booking id (the host's loader is called), or any
    object of the host's with ``id``, ``client_id`` and ``ends_at`` (``location`` too if
    staff have locations), e.g. its own row: no ``Booking`` to build. A naive ``ends_at``
    is read per ``RECOVERY_NAIVE_DATETIMES``. A row the badge cannot use (no
    ``client_id``, ``id`` or ``ends_at``, or an ``ends_at`` that is not a datetime) gets
    no badge and a warning naming what is missing, once per process and row type; a
    failing loader or anything else is logged the same way: a badge never breaks the
    host's page. Renders nothing without a logged-in staff member, for a booking outside
    the staff member's location, or when the client has no active flag for this booking. Otherwise a link to the
    client's history whose root carries ``data-recovery-flag="vip"`` or ``"conduct"``
    (conduct wins), with the reason in ``title`` (hover) and in visually hidden text
    (screen readers) that shows on keyboard focus. The first badge of a request loads the
    flags of every client at once (unless :meth:`Recovery.flags_for_bookings` did), so a
    page of 200 badges costs one query. For a long list :func:`render_badges` is cheaper.
    """
    try:  # zero cost until something fails; a badge never breaks the host's page
        cache = g.get("_recovery_badges") or badge_cache()
        viewer = cache.viewer or _viewer(cache)
        if viewer.staff is None:
            return _EMPTY
        try:
            client_id = booking.client_id
        except AttributeError:  # a bare booking id, or a row the badge cannot use
            if not _is_bare_id(booking):
                return _unusable(booking, "client_id")
            booking = _booking_of(cache, booking)
            if booking is None:
                return _EMPTY
            client_id = booking.client_id
        if client_id.__class__ is not str:
            if client_id is None:
                return _unusable(booking, "client_id", "is None")
            client_id = str(client_id)
        # the fast path first: most clients of a day list have no flag
        found = cache.by_client.get(client_id)
        if not found:
            if found is not None or cache.complete:
                return _EMPTY
            found = cache.flags_of(viewer.session, client_id)
            if not found:
                return _EMPTY
        return viewer.draw(booking, client_id, found)
    except Exception as error:
        _log_once(
            ("failed", type(error).__name__),
            "recovery_badge(%r) failed (%s); no badge is drawn (logged once per process for this kind of failure)",
            booking,
            type(error).__name__,
            exc_info=True,
        )
        return _EMPTY


_CLIENT_ID = attrgetter("client_id")


def _client_of(item: Any) -> Any:
    """The client id of a ``Booking`` or a host row (as it comes), ``None`` for a bare id."""
    try:
        return item.client_id
    except AttributeError:
        return None


class BadgeMap(dict):
    """Badges by booking id: ``badges[row.id]``, ``""`` for a booking without one.

    Only bookings with a badge are keys (``{% if row.id in badges %}`` skips the others),
    each under its id as it came, as a string, and a string of digits as an int too: a
    host's ``row.id`` finds the badge of its ``Booking`` (``id="12"``) and the other way round.
    """

    def __missing__(self, key: Any) -> Markup:
        if key.__class__ is str:
            return _EMPTY
        return self.get(str(key), _EMPTY)

    def put(self, key: Any, html: Markup) -> None:
        """File ``html`` under ``key``, ``str(key)`` and, for a string of digits, its int."""
        self[key] = html
        text = key if key.__class__ is str else str(key)
        self[text] = html
        if text.isdecimal() and text.isascii() and str(int(text)) == text:
            self[int(text)] = html


def render_badges(bookings: Any) -> BadgeMap:
    """``{% set badges = recovery_badges(rows) %}`` … ``{{ badges[row.id] }}``.

    The badges of a whole list at once (``Booking`` objects, the host's own rows with
    ``id``, ``client_id`` and ``ends_at``, or ids): one query, and no call per row for
    the many bookings without a flag. Each badge is the one :func:`render_badge` draws.
    For a long list the cheapest form in the row is ``{% if row.id in badges %}
    {{ badges[row.id] }}{% endif %}`` (``benchmarks/day_list.py`` measures both).
    """
    badges = BadgeMap()
    try:
        _fill_badges(badges, bookings)
    except Exception as error:  # never break the host's list: what was drawn so far stays
        _log_once(
            ("failed-list", type(error).__name__),
            "recovery_badges() failed (%s); the badges drawn so far are kept (logged once per process)",
            type(error).__name__,
            exc_info=True,
        )
    return badges


def _fill_badges(badges: BadgeMap, bookings: Any) -> None:
    cache = g.get("_recovery_badges") or badge_cache()
    viewer = cache.viewer or _viewer(cache)
    if viewer.staff is None:
        return
    items = bookings if isinstance(bookings, list) else list(bookings)
    try:  # the host's rows or Booking objects: every client id without a call per row
        clients = list(map(_CLIENT_ID, items))
    except AttributeError:  # bare ids among them
        clients = [_client_of(item) for item in items]
    if not cache.complete:
        known = cache.by_client  # what flags_for_bookings (or an earlier badge) loaded
        if not known or None in clients or not all(str(c) in known for c in clients):
            cache.load_all(viewer.session)  # one query for every client of the list
    lookup = cache.lookup(clients)
    for index in compress(range(len(items)), map(lookup.get, clients)):  # the few with an active flag
        item = items[index]
        key = getattr(item, "id", None)
        if key is None:
            _unusable(item, "id")
            continue
        if key in badges:
            continue  # listed twice: keep the first (it may carry the stylesheet)
        client_id = clients[index]
        html = viewer.draw(item, str(client_id), lookup[client_id])
        if html:
            badges.put(key, html)
    if None in clients:  # bare ids: as recovery_badge draws them (refs or the host's loader)
        for item, client_id in zip(items, clients, strict=True):
            if client_id is None and item not in badges:
                html = render_badge(item)
                if html:
                    badges.put(item, html)

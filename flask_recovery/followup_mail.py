"""The client's check-in mail (Reconnect) and the managers' alert when she is not happy.

:func:`render_followup` builds the mail for one ``FollowUp`` row, in the client's
language, from the overridable templates ``recovery/email/followup.txt`` and ``.html``.
It works outside a request (``flask recovery send-followups``): links are absolute,
from ``RECOVERY_BASE_URL``. Nothing a client or staff member typed reaches a header
unfiltered (line breaks and control characters are removed) or the HTML unescaped
(Jinja autoescaping). The mail tells the client what was done and what will change,
never the staff's own description of the incident.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from flask import current_app, render_template
from flask_babel import force_locale, get_locale
from flask_mail import Message
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import i18n
from .config import key
from .entities import Booking
from .extension import get_recovery
from .i18n import gettext as _
from .models import Compensation, FollowUp, Incident
from .notifications import external_url
from .tokens import serializer
from .vocabulary import category_label, status_label
from .widgets import format_money

_ADDRESS_RE = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")


def one_line(value: Any, limit: int = 120) -> str:
    """``value`` as one line of plain text: no line breaks or control characters, at most ``limit`` long.

    Whatever goes into a mail header passes through here.
    """
    if value is None:
        return ""
    text = str(value)
    if not text.isprintable():  # printable text has none of these (the usual case: skip the scan)
        text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return " ".join(text.split())[:limit].strip()


def first_name(full_name: Any) -> str:
    """The first word of a client's name (``Anna Smirnova`` -> ``Anna``), or ``""``."""
    words = one_line(full_name).split(" ")
    return words[0][:60] if words and words[0] else ""


def display_name(full_name: Any) -> str:
    """A client's name safe for the ``To`` header: letters, digits, spaces, ``-`` and ``'`` only.

    Flask-Mail encodes the name, but Python's SMTP policy decodes and refolds a long ``To``
    line without quoting it again, so a name such as ``Bcc: x@evil`` would be read as an
    address by the receiving mail client. Without address punctuation nothing can be.
    """
    return " ".join(re.sub(r"[^\w\s'-]|_", " ", one_line(full_name)).split())[:80]


def salon_name() -> str | None:
    """``RECOVERY_SALON_NAME``, else the display name of the mail's default sender."""
    configured = current_app.config[key("SALON_NAME")]
    if configured:
        return one_line(configured)
    sender = current_app.extensions["mail"].default_sender or current_app.config.get("MAIL_DEFAULT_SENDER")
    if isinstance(sender, tuple | list) and sender:
        name = sender[0]
    elif isinstance(sender, str):
        name = parseaddr(sender)[0]
    else:
        name = None
    return one_line(name) or None


def _message_domain() -> str:
    base = current_app.config[key("BASE_URL")]
    if base:
        host = urlsplit(base).hostname
        if host:
            return host
    sender = current_app.extensions["mail"].default_sender or current_app.config.get("MAIL_DEFAULT_SENDER")
    address = sender[1] if isinstance(sender, tuple | list) and len(sender) > 1 else sender
    if isinstance(address, str):
        domain = parseaddr(address)[1].rpartition("@")[2]
        if re.fullmatch(r"[A-Za-z0-9.-]+", domain or ""):
            return domain
    return "localhost"


def message_id_for(followup: FollowUp, domain: str | None = None) -> str:
    """The mail's ``Message-ID``: the same for the same row on every render and every worker,
    so a retried send is recognisably the same message."""
    kind = re.sub(r"[^a-z0-9_-]", "", str(followup.kind).lower()) or "checkin"
    return f"<recovery-followup-{int(followup.id)}-{kind}@{domain or _message_domain()}>"


def client_locale(followup: FollowUp, booking: Booking | None = None, locales: list[str] | None = None) -> str:
    """The client's language among ``RECOVERY_LOCALES`` (``ru_RU`` -> ``ru``), else the default.

    The follow-up's stored locale first, then the booking's (``Booking.locale``).
    """
    if locales is None:
        locales = list(current_app.config[key("LOCALES")])
    for candidate in (followup.locale, booking.locale if booking else None):
        if isinstance(candidate, str):
            chosen = i18n.supported_locale(candidate, locales)
            if chosen:
                return chosen
    return current_app.config[key("DEFAULT_LOCALE")]


#: Stands in for the signed token while a batch's links are built once: letters and digits
#: only, so ``url_for`` leaves it as it is and the token replaces it character for character.
_TOKEN_SLOT = "RecoveryTokenSlot7"
#: What URL-safe itsdangerous tokens are made of (nothing ``url_for`` would quote).
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_LINK_ENDPOINTS = {
    "good": ("answer", "recovery_answers.answer_page", {"choice": "good"}),
    "not_right": ("answer", "recovery_answers.answer_page", {"choice": "not_right"}),
    "unsubscribe": ("unsubscribe", "recovery_answers.unsubscribe_page", {}),
}


class MailBatch:
    """What the check-in mails of one dispatch batch share, worked out once for all of them.

    The salon's name, the Message-ID domain, the token serializers, and each link as a
    template: the URL is built once per batch (one ``url_for`` per kind of link, not three
    request contexts per mail) with a placeholder where the token goes, and every mail's
    link is that template with its own token in the placeholder's place: the very string
    ``url_for`` would have built for it. :meth:`prefetch` loads the cases and granted
    compensations of a batch's rows in two queries instead of two per row.
    """

    def __init__(self) -> None:
        self.salon = salon_name()
        self.domain = _message_domain()
        self.locales = list(current_app.config[key("LOCALES")])
        self.default_locale = current_app.config[key("DEFAULT_LOCALE")]
        self._serializers = {purpose: serializer(purpose) for purpose in ("answer", "unsubscribe")}
        self._templates: dict[str, str] | None = {}
        for name, (_purpose, endpoint, values) in _LINK_ENDPOINTS.items():
            url = external_url(endpoint, token=_TOKEN_SLOT, **values)
            if url.count(_TOKEN_SLOT) != 1:  # a host's URL defaults did something unusual: build each link
                self._templates = None
                break
            self._templates[name] = url
        self._remedies: dict[int, list[Compensation]] = {}
        self._gettexts: dict[str, dict[str, Callable[..., str]]] = {}

    def gettexts(self) -> dict[str, Callable[..., str]]:
        """``_r`` and ``ngettext_r`` for the locale in force (call it inside ``force_locale``).

        They translate as :mod:`flask_recovery.i18n`'s functions do, from the catalogue of
        that locale looked up once per batch instead of on every call.
        """
        locale = str(get_locale() or self.default_locale)
        found = self._gettexts.get(locale)
        if found is None:
            translations = i18n.domain.get_translations()

            def gettext(string: str, **variables: Any) -> str:
                text = translations.ugettext(string)
                return text % variables if variables else text

            def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
                variables.setdefault("num", num)
                return translations.ungettext(singular, plural, num) % variables

            found = self._gettexts[locale] = {"_r": gettext, "ngettext_r": ngettext}
        return found

    def links(self, followup_id: int) -> dict[str, str]:
        """The links of one mail: ``good``, ``not_right`` and ``unsubscribe``."""
        tokens = {purpose: self._serializers[purpose].dumps(int(followup_id)) for purpose in ("answer", "unsubscribe")}
        if self._templates is None or not all(_TOKEN_CHARS.fullmatch(token) for token in tokens.values()):
            return {
                name: external_url(endpoint, token=tokens[purpose], **values)
                for name, (purpose, endpoint, values) in _LINK_ENDPOINTS.items()
            }
        return {
            name: self._templates[name].replace(_TOKEN_SLOT, tokens[purpose])
            for name, (purpose, _endpoint, _values) in _LINK_ENDPOINTS.items()
        }

    def prefetch(self, session: Session, incident_ids: set[int]) -> None:
        """Load the cases ``incident_ids`` (into the session) and their granted compensations."""
        ids = {int(i) for i in incident_ids if i is not None} - set(self._remedies)
        if not ids:
            return
        list(session.scalars(select(Incident).where(Incident.id.in_(ids))))
        for incident_id in ids:
            self._remedies[incident_id] = []
        stmt = (
            select(Compensation)
            .where(Compensation.incident_id.in_(ids), Compensation.status == "granted")
            .order_by(Compensation.id)
        )
        for compensation in session.scalars(stmt):
            self._remedies[compensation.incident_id].append(compensation)

    def remedies(self, session: Session, incident: Incident | None) -> list[str]:
        """:func:`remedy_phrases` from what :meth:`prefetch` loaded (a query if it did not)."""
        if incident is None or incident.id not in self._remedies:
            return remedy_phrases(session, incident)
        return [_remedy_phrase(c) for c in self._remedies[incident.id]]


def followup_links(followup: FollowUp, batch: MailBatch | None = None) -> dict[str, str]:
    """Absolute links for the mail: ``good``, ``not_right`` (answer pages) and ``unsubscribe``."""
    links = (batch or MailBatch()).links(followup.id)
    if not links["good"].startswith(("https://", "http://")):
        raise RuntimeError(
            "The links in client mail must be absolute: set RECOVERY_BASE_URL "
            "(e.g. 'https://salon.example.com') or SERVER_NAME."
        )
    return links


def remedy_phrases(session: Session, incident: Incident | None) -> list[str]:
    """What was done for the client, in her words: the granted compensations of the case."""
    if incident is None:
        return []
    stmt = (
        select(Compensation)
        .where(Compensation.incident_id == incident.id, Compensation.status == "granted")
        .order_by(Compensation.id)
    )
    return [_remedy_phrase(c) for c in session.scalars(stmt)]


def _remedy_phrase(compensation: Compensation) -> str:
    amount = format_money(compensation.amount, compensation.currency)
    if compensation.kind == "gift":
        phrase = _("a small gift from us")
    elif compensation.kind == "discount":
        phrase = _("%(amount)s off your next visit", amount=amount)
    elif compensation.kind == "percent_discount":
        phrase = _("%(percent)s%% off your next visit", percent=compensation.percent)
    elif compensation.kind == "redo":
        phrase = _("a free redo of the service")
    elif compensation.kind == "refund":
        phrase = _("a refund of %(amount)s", amount=amount)
    else:
        phrase = str(compensation.kind)
    if compensation.voucher_code:
        until = ""
        if compensation.voucher_expires_at is not None:
            until = format_date(_local(compensation.voucher_expires_at), "long", locale=_current_locale())
        phrase += " (" + _("your code: %(code)s, valid until %(date)s", code=compensation.voucher_code, date=until)
        phrase += ")"
    return phrase


def _current_locale() -> str:
    return str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])


def _local(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo(current_app.config[key("TIMEZONE")]))


def _visit_date(booking: Booking | None, incident: Incident | None) -> str:
    when = booking.starts_at if booking is not None else incident.visit_started_at if incident is not None else None
    if when is None:
        return ""
    return format_skeleton("MMMMd", _local(when), locale=_current_locale())


def _address(followup: FollowUp, booking: Booking | None) -> str:
    address = followup.email or (booking.client_email if booking is not None else None)
    if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address.strip()) or len(address) > 254:
        raise ValueError(f"follow-up {followup.id} has no usable e-mail address")
    return address.strip()


def render_followup(
    followup: FollowUp,
    booking: Booking | None,
    incident: Incident | None,
    batch: MailBatch | None = None,
    *,
    locale: str | None = None,
) -> Message:
    """The check-in mail for ``followup``, ready for ``recovery.mailer``.

    ``booking`` is the host's booking (``None`` if the loader no longer knows it: the
    name and address stored on the row are used); ``incident`` is the case the check-in
    follows (``None`` for a check-in after an ordinary visit). The mail is in the
    client's language, multipart (plain text + HTML), with a stable ``Message-ID``,
    ``List-Unsubscribe`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``.
    Raises ``ValueError`` when the row has no usable address and ``RuntimeError`` when
    neither ``RECOVERY_BASE_URL`` nor ``SERVER_NAME`` gives absolute links. Call it inside
    an app context; no request is needed. ``batch``: what the mails of one dispatch batch
    share (:class:`MailBatch`), so it is worked out once, not per mail. ``locale``
    overrides the client's language (``flask recovery preview-followup --locale``).
    """
    batch = batch or MailBatch()
    address = _address(followup, booking)
    full_name = one_line(followup.client_name or (booking.client_name if booking is not None else ""))
    name = first_name(full_name)
    locale = locale or client_locale(followup, booking, batch.locales)
    links = followup_links(followup, batch)
    with force_locale(locale):
        if name:
            subject = _("How are you after your visit, %(name)s?", name=name)
        else:
            subject = _("How are you after your visit?")
        subject = one_line(subject, 200)
        context = {
            **batch.gettexts(),  # the templates' _r and ngettext_r, from this batch's catalogue
            "followup": followup,
            "name": name,
            "salon": batch.salon,
            "visit_date": _visit_date(booking, incident),
            "service": one_line(booking.service) if booking is not None else "",
            "incident": incident,
            "remedies": batch.remedies(get_recovery().session, incident),
            "what_will_change": (incident.corrective_action or "").strip() if incident is not None else "",
            "reminder": followup.kind == "reminder",
            "links": links,
            "subject": subject,
            "lang": locale.split("_")[0],
        }
        body = render_template("recovery/email/followup.txt", **context)
        html = render_template("recovery/email/followup.html", **context)
    shown_name = display_name(full_name)
    message = Message(
        subject=subject,
        recipients=[(shown_name, address) if shown_name else address],
        body=body,
        html=html,
    )
    if followup.id is not None:  # a preview of a mail not planned yet has no row, so no id
        message.msgId = message_id_for(followup, batch.domain)
    message.extra_headers = {
        "List-Unsubscribe": f"<{links['unsubscribe']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return message


def unhappy_answer_message(session: Session, row) -> Message | None:
    """The managers' mail for a ``Notification`` of kind ``unhappy_answer`` (``None``: skip it)."""
    recipients = list(current_app.config[key("MANAGER_EMAILS")])
    try:
        followup = session.get(FollowUp, int(row.subject_id))
    except (TypeError, ValueError):
        followup = None
    if not recipients or followup is None:
        return None
    incident = session.get(Incident, followup.incident_id) if followup.incident_id is not None else None
    with force_locale(current_app.config[key("DEFAULT_LOCALE")]):
        client = one_line(followup.client_name) or followup.client_id
        context = {
            "followup": followup,
            "client": client,
            "incident": incident,
            "category": category_label(incident.category) if incident is not None else "",
            "status": status_label(incident.status) if incident is not None else "",
            "link": external_url("recovery.booking", booking_id=followup.booking_id),
        }
        subject = _("Still not right: %(client)s, booking %(booking)s", client=client, booking=followup.booking_id)
        message = Message(
            subject=one_line(subject, 200),
            recipients=recipients,
            body=render_template("recovery/email/unhappy_answer.txt", **context),
            html=render_template("recovery/email/unhappy_answer.html", **context),
        )
    message.extra_headers = {"Auto-Submitted": "auto-generated"}
    return message


# -- preview ---------------------------------------------------------------------------

#: What stands for the signed token in a preview's links: a preview prints no working
#: answer link (a test click must not answer for the client), and a mail not planned yet
#: has no row whose id a token could carry.
TOKEN_PLACEHOLDER = "{token}"


class NoFollowUp(Exception):
    """The booking gets no check-in (or no reminder); ``reason`` says why, for an operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PreviewBatch(MailBatch):
    """A :class:`MailBatch` whose links carry :data:`TOKEN_PLACEHOLDER` instead of a token."""

    def links(self, followup_id: int | None) -> dict[str, str]:
        """The mail's links as sent, with the token replaced by the placeholder."""
        if self._templates is not None:
            templates = self._templates
        else:  # a host's URL defaults did something unusual: build each one
            templates = {
                name: external_url(endpoint, token=_TOKEN_SLOT, **values)
                for name, (_purpose, endpoint, values) in _LINK_ENDPOINTS.items()
            }
        return {name: url.replace(_TOKEN_SLOT, TOKEN_PLACEHOLDER) for name, url in templates.items()}


@dataclass
class Preview:
    """What :func:`preview_followup` found: the mail and when it would go out."""

    booking: Booking
    kind: str
    message: Message
    links: dict[str, str]
    locale: str
    incident: Incident | None
    #: When it is (or would be) due, UTC; for a sent mail, when it was sent.
    due_at: datetime
    #: ``planned`` (a row waits), ``sending``, ``sent``, or ``not planned yet``.
    state: str
    #: What the due time depends on, for the operator (``[]`` when nothing).
    conditions: list[str] = field(default_factory=list)


def _case_for_checkin(incidents: list[Incident]) -> Incident | None:
    """The case a check-in of this visit follows: the first one resolved (planning goes in
    order of resolution and keeps one check-in per visit), else the latest still open."""
    resolved = [i for i in incidents if i.status in ("resolved", "closed") and i.resolved_at is not None]
    if resolved:
        return min(resolved, key=lambda i: (i.resolved_at, i.id))
    return incidents[-1] if incidents else None


def _planned_checkin(session: Session, recovery: Any, booking: Booking, incidents: list[Incident], now: datetime):
    """``(incident, due_at, conditions)`` for a check-in not planned yet, as
    :func:`~flask_recovery.followups.plan_followups` would plan it; raises :class:`NoFollowUp`."""
    from .followups import PLAN_HORIZON, _safe_due

    config = current_app.config
    conditions: list[str] = []
    incident = _case_for_checkin(incidents)
    if incident is not None and incident.status in ("resolved", "closed") and incident.resolved_at is not None:
        if incident.resolved_at <= now - PLAN_HORIZON:
            raise NoFollowUp(
                f"case {incident.id} was resolved more than {PLAN_HORIZON.days} days ago, "
                "outside the planning horizon: no check-in will be planned for it"
            )
        due = _safe_due(incident.visit_ended_at, incident.resolved_at)
    elif incident is not None:  # open or reopened: the clock starts at the resolution
        due = _safe_due(incident.visit_ended_at, now)
        conditions.append(
            f"case {incident.id} is {incident.status}: the check-in is planned once it is resolved "
            "(RECOVERY_FOLLOWUP_DELAY after the resolution, in the sending window); the time shown "
            "is for a resolution now"
        )
    else:
        if not config[key("FOLLOWUP_ALL_VISITS")]:
            raise NoFollowUp(
                "no incident is recorded on this visit, and check-ins follow resolved cases only "
                "(RECOVERY_FOLLOWUP_ALL_VISITS is off)"
            )
        if hasattr(recovery, "bookings_between_loader"):
            between = recovery.bookings_between_loader
        else:  # before the public name (0.x)
            between = recovery._bookings_between
        if between is None:
            raise NoFollowUp(
                "RECOVERY_FOLLOWUP_ALL_VISITS is on, but check-ins after ordinary visits need a loader "
                "registered with @recovery.bookings_between"
            )
        if booking.starts_at < now - PLAN_HORIZON:
            raise NoFollowUp(f"the visit started more than {PLAN_HORIZON.days} days ago, outside the planning horizon")
        if booking.status == "booked":
            conditions.append("planned once the host reports the visit completed (status is still 'booked')")
        elif booking.status == "completed" and booking.ends_at > now:
            conditions.append("planned once the visit has ended")
        due = _safe_due(booking.ends_at, None)
    if due is None:
        raise NoFollowUp("the visit's date is out of range")
    return incident, due, conditions


def _stored_row_problem(row: FollowUp, what: str) -> None:
    """Raise :class:`NoFollowUp` for a row that will not be sent (cancelled, failed, voided)."""
    if row.status == "cancelled":
        raise NoFollowUp(f"the {what} was cancelled: {row.last_error or 'no reason recorded'}")
    if row.status == "failed":
        raise NoFollowUp(f"sending the {what} failed for good after {row.attempts} attempts: {row.last_error}")
    if row.voided_at is not None:
        raise NoFollowUp(f"the {what}'s links were voided (the client's data was erased)")


def preview_followup(
    booking_id: Any, kind: str = "checkin", locale: str | None = None, now: datetime | None = None
) -> Preview:
    """The check-in (or reminder) mail ``booking_id`` gets, rendered now, sent nowhere.

    Computed with the planner's own rules (:func:`~flask_recovery.followups.due_time`,
    its reasons to skip a visit), even when the mail is only due tomorrow or not planned
    yet: nothing is written to any table (the session is rolled back at the end) and no
    SMTP connection is made. The links carry :data:`TOKEN_PLACEHOLDER` instead of a
    signed token. Raises :class:`~flask_recovery.errors.NotFound` for a booking the
    loader does not know and :class:`NoFollowUp` (with the reason) for one that gets no
    such mail. ``locale`` overrides the client's language.
    """
    from .followups import _skip_reason, in_window
    from .models import Erasure, Unsubscribe, utcnow

    if kind not in ("checkin", "reminder"):
        raise ValueError(f"kind must be 'checkin' or 'reminder', not {kind!r}")
    recovery = get_recovery()
    session = recovery.session
    config = current_app.config
    now = now or utcnow()
    try:
        booking = recovery.load_booking(booking_id)
        client_id = booking.client_id
        if session.get(Erasure, client_id) is not None:
            raise NoFollowUp("the client's data was erased with forget-client: nothing is sent to them")
        cases = select(Incident).where(Incident.booking_id == booking.id).order_by(Incident.id)
        incidents = list(session.scalars(cases))
        conduct = [i for i in incidents if i.conduct]
        if conduct:
            raise NoFollowUp(f"case {conduct[0].id} is a client-conduct case: no check-in follows one")
        rows = {r.kind: r for r in session.scalars(select(FollowUp).where(FollowUp.booking_id == booking.id))}
        if booking.status in ("cancelled", "no_show"):
            raise NoFollowUp(f"visit {booking.status}")
        checkin = rows.get("checkin")
        conditions: list[str] = []
        row = rows.get(kind)
        if row is not None:
            _stored_row_problem(row, "check-in" if kind == "checkin" else "reminder")
            incident = session.get(Incident, row.incident_id) if row.incident_id is not None else None
            state = {"scheduled": "planned"}.get(row.status, row.status)
            due = row.sent_at if row.status == "sent" and row.sent_at is not None else row.due_at
        elif kind == "checkin":
            incident, due, conditions = _planned_checkin(session, recovery, booking, incidents, now)
            reason = _skip_reason(session, booking, client_id, due)
            if reason:
                raise NoFollowUp(reason)
            state = "not planned yet"
        else:  # a reminder not planned yet
            after = config[key("FOLLOWUP_REMINDER_AFTER")]
            if after is None:
                raise NoFollowUp("reminders are off (RECOVERY_FOLLOWUP_REMINDER_AFTER is None)")
            if checkin is not None:
                _stored_row_problem(checkin, "check-in")
                incident = session.get(Incident, checkin.incident_id) if checkin.incident_id is not None else None
                answered = session.scalar(
                    select(FollowUp.id).where(FollowUp.booking_id == booking.id, FollowUp.answer.is_not(None)).limit(1)
                )
                if answered is not None:
                    raise NoFollowUp("the client already answered the check-in: no reminder follows")
                if checkin.status == "sent" and checkin.sent_at is not None:
                    base = max(now, checkin.sent_at + after)
                else:
                    base = checkin.due_at + after
                    conditions.append("after the check-in goes out as planned")
            else:
                incident, checkin_due, conditions = _planned_checkin(session, recovery, booking, incidents, now)
                reason = _skip_reason(session, booking, client_id, checkin_due)
                if reason:
                    raise NoFollowUp(f"no check-in goes out, so no reminder either: {reason}")
                base = checkin_due + after
                conditions.append("after the check-in, which is not planned yet")
            conditions.append("only if the client has not answered the check-in by then")
            if session.get(Unsubscribe, client_id) is not None:
                raise NoFollowUp("unsubscribed")
            if not booking.client_email:
                raise NoFollowUp("no e-mail address")
            due = in_window(base, config[key("TIMEZONE")], config[key("FOLLOWUP_WINDOW")])
            state = "not planned yet"
        if row is None:  # what the planner would store (never added to the session)
            row = FollowUp(
                id=None,
                booking_id=booking.id,
                client_id=client_id,
                incident_id=incident.id if incident is not None else None,
                location=booking.location,
                kind=kind,
                status="scheduled",
                due_at=due,
                locale=(checkin.locale if checkin is not None and kind == "reminder" else booking.locale)
                or config[key("DEFAULT_LOCALE")],
                email=booking.client_email,
                client_name=(booking.client_name or "")[:120],
                attempts=0,
            )
        batch = PreviewBatch()
        chosen = i18n.supported_locale(locale, batch.locales) if locale else None
        if locale and chosen is None:
            raise ValueError(f"locale {locale!r} is not one of RECOVERY_LOCALES {batch.locales}")
        chosen = chosen or client_locale(row, booking, batch.locales)
        try:
            message = render_followup(row, booking, incident, batch=batch, locale=chosen)
        except ValueError as error:
            raise NoFollowUp(str(error)) from None
        return Preview(
            booking=booking,
            kind=kind,
            message=message,
            links=batch.links(row.id),
            locale=chosen,
            incident=incident,
            due_at=due,
            state=state,
            conditions=conditions,
        )
    finally:
        session.rollback()  # a preview stores nothing, whatever a loader or a query left pending

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
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from flask import current_app, render_template
from flask_babel import force_locale
from flask_mail import Message
from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import key
from .entities import Booking
from .extension import get_recovery
from .i18n import gettext as _
from .models import Compensation, FollowUp, Incident
from .notifications import external_url
from .tokens import make_token
from .vocabulary import category_label, status_label
from .widgets import format_money

_ADDRESS_RE = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")


def one_line(value: Any, limit: int = 120) -> str:
    """``value`` as one line of plain text: no line breaks or control characters, at most ``limit`` long.

    Whatever goes into a mail header passes through here.
    """
    if value is None:
        return ""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value))
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


def message_id_for(followup: FollowUp) -> str:
    """The mail's ``Message-ID``: the same for the same row on every render and every worker,
    so a retried send is recognisably the same message."""
    kind = re.sub(r"[^a-z0-9_-]", "", str(followup.kind).lower()) or "checkin"
    return f"<recovery-followup-{int(followup.id)}-{kind}@{_message_domain()}>"


def client_locale(followup: FollowUp, booking: Booking | None = None) -> str:
    """The client's language among ``RECOVERY_LOCALES`` (``ru_RU`` -> ``ru``), else the default."""
    locales = list(current_app.config[key("LOCALES")])
    for candidate in (followup.locale, booking.locale if booking else None):
        if not isinstance(candidate, str) or not candidate:
            continue
        normal = candidate.strip().replace("-", "_")
        if normal in locales:
            return normal
        language = normal.split("_")[0].lower()
        for locale in locales:
            if locale.split("_")[0] == language:
                return locale
    return current_app.config[key("DEFAULT_LOCALE")]


def followup_links(followup: FollowUp) -> dict[str, str]:
    """Absolute links for the mail: ``good``, ``not_right`` (answer pages) and ``unsubscribe``."""
    answer = make_token("answer", followup.id)
    unsubscribe = make_token("unsubscribe", followup.id)
    links = {
        "good": external_url("recovery_answers.answer_page", token=answer, choice="good"),
        "not_right": external_url("recovery_answers.answer_page", token=answer, choice="not_right"),
        "unsubscribe": external_url("recovery_answers.unsubscribe_page", token=unsubscribe),
    }
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
    from flask_babel import get_locale

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


def render_followup(followup: FollowUp, booking: Booking | None, incident: Incident | None) -> Message:
    """The check-in mail for ``followup``, ready for ``recovery.mailer``.

    ``booking`` is the host's booking (``None`` if the loader no longer knows it: the
    name and address stored on the row are used); ``incident`` is the case the check-in
    follows (``None`` for a check-in after an ordinary visit). The mail is in the
    client's language, multipart (plain text + HTML), with a stable ``Message-ID``,
    ``List-Unsubscribe`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``.
    Raises ``ValueError`` when the row has no usable address and ``RuntimeError`` when
    neither ``RECOVERY_BASE_URL`` nor ``SERVER_NAME`` gives absolute links. Call it inside
    an app context; no request is needed.
    """
    address = _address(followup, booking)
    full_name = one_line(followup.client_name or (booking.client_name if booking is not None else ""))
    name = first_name(full_name)
    locale = client_locale(followup, booking)
    links = followup_links(followup)
    with force_locale(locale):
        if name:
            subject = _("How are you after your visit, %(name)s?", name=name)
        else:
            subject = _("How are you after your visit?")
        subject = one_line(subject, 200)
        context = {
            "followup": followup,
            "name": name,
            "salon": salon_name(),
            "visit_date": _visit_date(booking, incident),
            "service": one_line(booking.service) if booking is not None else "",
            "incident": incident,
            "remedies": remedy_phrases(get_recovery().session, incident),
            "what_will_change": (incident.corrective_action or "").strip() if incident is not None else "",
            "reminder": followup.kind == "reminder",
            "links": links,
            "subject": subject,
            "lang": locale.split("_")[0],
        }
        body = render_template("recovery/email/followup.txt", **context)
        html = render_template("recovery/email/followup.html", **context)
    message = Message(
        subject=subject,
        recipients=[(display_name(full_name), address) if display_name(full_name) else address],
        body=body,
        html=html,
    )
    message.msgId = message_id_for(followup)
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

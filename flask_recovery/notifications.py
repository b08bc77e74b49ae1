"""Staff mail from the outbox (``recovery_notifications``): requests for approval, alerts.

Rows are written in the same transaction as the action that caused them and sent later by
``flask recovery send-notifications`` (cron) or the Celery task, never inside the request.
A batch is claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a write
transaction on SQLite), sent over one SMTP connection outside any transaction, and marked
sent only by the claim that sent it.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_request_context, render_template, url_for
from flask_babel import force_locale
from flask_mail import Message
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .config import key
from .domain.compensations import approval_card
from .extension import get_recovery
from .i18n import gettext as _
from .models import Compensation, Notification, utcnow
from .outbox import claim_rows, finish_row
from .vocabulary import kind_label
from .widgets import format_money

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8


@dataclass
class BatchResult:
    """What one run did."""

    sent: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0


def _claim(session: Session, limit: int, now: datetime) -> tuple[str, list[int]]:
    """Lease up to ``limit`` due rows to this run; returns the lease token and the row ids."""
    due = or_(
        Notification.status == "pending",
        (Notification.status == "sending") & (Notification.claimed_until < now),
    )
    return claim_rows(session, Notification, due, (Notification.id,), limit, now, LEASE)


def _finish(session: Session, row_id: int, token: str, **values) -> bool:
    """Update a row only if this run's lease still holds it."""
    return finish_row(session, Notification, row_id, token, **values)


def external_url(endpoint: str, **values) -> str:
    """An absolute link for mail: from ``RECOVERY_BASE_URL``, else ``SERVER_NAME``; a bare
    path when neither is configured."""
    base = current_app.config[key("BASE_URL")]
    if base:
        with current_app.test_request_context(base_url=base):
            return url_for(endpoint, _external=True, **values)
    if has_request_context() or current_app.config.get("SERVER_NAME"):
        return url_for(endpoint, _external=True, **values)
    with current_app.test_request_context():
        return url_for(endpoint, **values)


def _approval_message(session: Session, row: Notification) -> Message | None:
    recipients = list(current_app.config[key("MANAGER_EMAILS")])
    compensation = session.get(Compensation, int(row.subject_id))
    if not recipients or compensation is None:
        return None
    link = external_url("recovery.approvals")
    with force_locale(current_app.config[key("DEFAULT_LOCALE")]):
        context = {
            "compensation": compensation,
            "kind": kind_label(compensation.kind),
            "amount": format_money(compensation.amount),
            "link": link,
            # the visit's price, what was already given, the client and what happened
            "card": approval_card(session, compensation, get_recovery().load_bookings),
        }
        subject = _("Approval needed: %(kind)s, %(amount)s", kind=context["kind"], amount=context["amount"])
        message = Message(
            subject=" ".join(subject.split()),
            recipients=recipients,
            body=render_template("recovery/email/approval_requested.txt", **context),
            html=render_template("recovery/email/approval_requested.html", **context),
        )
    message.extra_headers = {"Auto-Submitted": "auto-generated"}
    return message


def _unhappy_answer_message(session: Session, row: Notification) -> Message | None:
    from .followup_mail import unhappy_answer_message

    return unhappy_answer_message(session, row)


BUILDERS = {"approval_requested": _approval_message, "unhappy_answer": _unhappy_answer_message}


def send_pending_notifications(limit: int = 100, dry_run: bool = False) -> BatchResult:
    """Send due staff mail; safe to run from several workers at once."""
    recovery = get_recovery()
    session = recovery.session
    result = BatchResult()
    if dry_run:
        result.sent = len(
            list(session.scalars(select(Notification.id).where(Notification.status == "pending").limit(limit)))
        )
        return result
    now = utcnow()
    token, ids = _claim(session, limit, now)
    if not ids:
        return result
    rows = {row.id: row for row in session.scalars(select(Notification).where(Notification.id.in_(ids)))}
    messages = {}
    for row_id in ids:
        message = BUILDERS.get(rows[row_id].kind, lambda s, r: None)(session, rows[row_id])
        if message is None:
            _finish(session, row_id, token, status="skipped", sent_at=now, last_error=None)
            result.skipped += 1
        else:
            messages[row_id] = (message, rows[row_id].attempts)
    session.commit()  # no transaction stays open while we talk to the SMTP server
    if not messages:
        return result
    try:
        with recovery.mailer.connection() as conn:
            for row_id, (message, attempts) in messages.items():
                try:
                    conn.send(message)
                except smtplib.SMTPResponseException as error:
                    permanent = 500 <= error.smtp_code < 600
                    _record_failure(
                        session, row_id, token, attempts, f"{error.smtp_code} {error.smtp_error!r}", permanent, result
                    )
                except smtplib.SMTPRecipientsRefused as error:
                    _record_failure(session, row_id, token, attempts, f"recipients refused: {error}", True, result)
                else:
                    _finish(session, row_id, token, status="sent", sent_at=utcnow(), last_error=None)
                    result.sent += 1
    except (OSError, smtplib.SMTPException) as error:  # the connection itself failed: retry them all
        for row_id, (_message, attempts) in messages.items():
            row_status = session.scalar(select(Notification.status).where(Notification.id == row_id))
            if row_status == "sending":
                _record_failure(session, row_id, token, attempts, f"connection: {error}", False, result)
    return result


def _record_failure(session, row_id, token, attempts, reason, permanent, result) -> None:
    attempts += 1
    if permanent or attempts >= MAX_ATTEMPTS:
        _finish(session, row_id, token, status="failed", attempts=attempts, last_error=reason[:500])
        result.failed += 1
    else:
        _finish(
            session, row_id, token, status="pending", attempts=attempts, claimed_until=None, last_error=reason[:500]
        )
        result.retry += 1

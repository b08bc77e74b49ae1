"""Reconnect: scheduling the post-visit check-in and dispatching it from the outbox.

Planning turns resolved incidents (and, with ``RECOVERY_FOLLOWUP_ALL_VISITS``, completed
visits) into ``recovery_followups`` rows, one per booking and kind (a unique constraint
makes planning idempotent and safe to run from several processes); nothing is planned for
a client erased with ``forget-client``. Dispatching leases due rows in a short transaction
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), renders them
(what a batch's mails share is worked out once: :class:`~flask_recovery.followup_mail.MailBatch`),
sends them outside any transaction over one SMTP connection with a socket timeout, and
marks each row sent only if its lease is still the run's own, committed before the server
is handed the next message (:mod:`flask_recovery.outbox`).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from flask_mail import Message
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from . import signals
from .config import key
from .entities import Booking
from .errors import NotFound
from .extension import get_recovery
from .mail import TimeoutConnection
from .models import Erasure, FollowUp, Incident, Unsubscribe, utcnow
from .outbox import Finisher, claim_rows, finisher_for

log = logging.getLogger("flask_recovery")

LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 8
#: Retry delays after a temporary failure (the last one repeats).
BACKOFF = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=3))
#: How far back planning looks for finished visits (ALL_VISITS) and resolved cases.
PLAN_HORIZON = timedelta(days=14)


# -- when ----------------------------------------------------------------------------


def in_window(moment: datetime, tz_name: str, window: tuple[int, int]) -> datetime:
    """The first instant at or after ``moment`` inside the local sending window, in UTC.

    The window is in local wall-clock hours of ``tz_name``; a day's opening is computed on
    that day's own UTC offset, so daylight-saving changes move nothing to 3 a.m.
    """
    start, end = window
    if (start, end) == (0, 24):
        return moment
    tz = ZoneInfo(tz_name)
    local = moment.astimezone(tz)

    def opening(day: date) -> datetime:
        return datetime.combine(day, time(start), tzinfo=tz)

    if local.hour < start:
        return opening(local.date()).astimezone(moment.tzinfo)
    if local.hour >= end:
        return opening(local.date() + timedelta(days=1)).astimezone(moment.tzinfo)
    return moment


def due_time(visit_ended_at: datetime, resolved_at: datetime | None) -> datetime:
    """``RECOVERY_FOLLOWUP_DELAY`` after the visit or the resolution (the later), in the window."""
    config = current_app.config
    base = max(visit_ended_at, resolved_at) if resolved_at else visit_ended_at
    return in_window(base + config[key("FOLLOWUP_DELAY")], config[key("TIMEZONE")], config[key("FOLLOWUP_WINDOW")])


# -- planning ------------------------------------------------------------------------


def _erased(session: Session, client_ids: set[str]) -> set[str]:
    """Which of ``client_ids`` were erased with ``forget-client``."""
    if not client_ids:
        return set()
    return set(session.scalars(select(Erasure.client_id).where(Erasure.client_id.in_(client_ids))))


#: What an erased client's claimed row becomes: cancelled, and nothing of her kept on it.
ERASED = {"status": "cancelled", "last_error": "erased", "email": None, "client_name": None, "claimed_until": None}


def _insert_ignore(session: Session, **values) -> bool:
    """Insert the follow-up row unless one of its booking and kind exists; whether it was new."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(FollowUp).values(**values).on_conflict_do_nothing(index_elements=["booking_id", "kind"])
    return session.execute(stmt.returning(FollowUp.id)).first() is not None


def _skip_reason(session: Session, booking: Booking | None, client_id: str, due: datetime) -> str | None:
    """Why no check-in goes to this visit, or ``None``."""
    if booking is None:
        return "booking unknown to the host"
    if booking.status in ("cancelled", "no_show"):
        return f"visit {booking.status}"
    if not booking.client_email:
        return "no e-mail address"
    if session.get(Unsubscribe, client_id) is not None:
        return "unsubscribed"
    interval = current_app.config[key("FOLLOWUP_MIN_INTERVAL")]
    if interval:
        recent = session.scalar(
            select(FollowUp.id)
            .where(
                FollowUp.client_id == client_id,
                FollowUp.kind == "checkin",
                FollowUp.status.in_(("scheduled", "sending", "sent")),
                FollowUp.booking_id != booking.id,
                FollowUp.due_at > due - interval,
                FollowUp.due_at < due + interval,
            )
            .limit(1)
        )
        if recent is not None:
            return "another check-in within RECOVERY_FOLLOWUP_MIN_INTERVAL"
    return None


def _load(loader: Callable[[str], Booking], booking_id: str) -> Booking | None:
    try:
        return loader(booking_id)
    except NotFound:
        return None


def _safe_due(visit_ended_at: datetime, resolved_at: datetime | None) -> datetime | None:
    """:func:`due_time`, or ``None`` for a visit dated so far ahead that no mail can be due."""
    try:
        return due_time(visit_ended_at, resolved_at)
    except OverflowError:
        return None


def _plan_one(
    session: Session,
    booking: Booking | None,
    booking_id: str,
    client_id: str,
    incident_id: int | None,
    due: datetime | None,
    location: str | None,
    now: datetime,
) -> bool:
    reason = None
    if due is not None:
        try:
            reason = _skip_reason(session, booking, client_id, due)
        except OverflowError:
            due = None
    if due is None:  # one absurd date must not stop the run for every other client
        reason, due = "visit date out of range", now
    made = _insert_ignore(
        session,
        booking_id=booking_id,
        client_id=client_id,
        incident_id=incident_id,
        location=location,
        kind="checkin",
        status="cancelled" if reason else "scheduled",
        due_at=due,
        locale=(booking.locale if booking else None) or current_app.config[key("DEFAULT_LOCALE")],
        email=None if reason else booking.client_email,
        client_name=None if reason else booking.client_name[:120],
        attempts=0,
        last_error=reason,
        created_at=now,
    )
    session.commit()
    return made


def plan_followups(session: Session, now: datetime | None = None) -> int:
    """Create the check-in rows that are now known to be needed; returns how many were new.

    Nothing is planned for a client erased with ``forget-client`` (``recovery_erasures``):
    not even a cancelled row, so nothing about her is written again. The queries read the
    cases and visits of the planning horizon, never the whole table.
    """
    now = now or utcnow()
    recovery = get_recovery()
    made = 0
    has_checkin = exists().where(FollowUp.booking_id == Incident.booking_id, FollowUp.kind == "checkin")
    conduct = aliased(Incident)
    conduct_case = exists().where(conduct.booking_id == Incident.booking_id, conduct.conduct.is_(True))
    cases = session.execute(
        select(
            Incident.id,
            Incident.booking_id,
            Incident.client_id,
            Incident.location,
            Incident.visit_ended_at,
            Incident.resolved_at,
        )
        .where(
            Incident.conduct.is_(False),
            Incident.status.in_(("resolved", "closed")),
            Incident.resolved_at > now - PLAN_HORIZON,
            ~has_checkin,
            ~conduct_case,
            ~exists().where(Erasure.client_id == Incident.client_id),
        )
        .order_by(Incident.resolved_at)
    ).all()
    for incident_id, booking_id, client_id, location, ended, resolved in cases:
        booking = _load(recovery.load_booking, booking_id)
        due = _safe_due(ended, resolved)
        made += _plan_one(session, booking, booking_id, client_id, incident_id, due, location, now)

    if current_app.config[key("FOLLOWUP_ALL_VISITS")] and recovery._bookings_between is not None:
        visits = [
            booking
            for booking in recovery._bookings_between(now - PLAN_HORIZON, now)
            if booking.status == "completed" and booking.ends_at <= now
        ]
        erased = _erased(session, {str(booking.client_id) for booking in visits})
        ids = [booking.id for booking in visits]
        # a visit with a check-in planned already, or with a case (planned with it once resolved)
        done = _bookings_with(session, ids, select(FollowUp.booking_id).where(FollowUp.kind == "checkin"))
        done |= _bookings_with(session, ids, select(Incident.booking_id))
        for booking in visits:
            if str(booking.client_id) in erased or booking.id in done:
                continue
            made += _plan_one(
                session,
                booking,
                booking.id,
                booking.client_id,
                None,
                _safe_due(booking.ends_at, None),
                booking.location,
                now,
            )

    reminder_after = current_app.config[key("FOLLOWUP_REMINDER_AFTER")]
    if reminder_after is not None:
        checkin = aliased(FollowUp)
        has_reminder = exists().where(FollowUp.kind == "reminder", FollowUp.booking_id == checkin.booking_id)
        unanswered = session.execute(
            select(
                checkin.booking_id,
                checkin.client_id,
                checkin.incident_id,
                checkin.location,
                checkin.sent_at,
                checkin.locale,
                checkin.email,
                checkin.client_name,
            ).where(
                checkin.kind == "checkin",
                checkin.status == "sent",
                checkin.answer.is_(None),
                checkin.voided_at.is_(None),
                checkin.sent_at <= now - reminder_after,
                ~has_reminder,
                ~exists().where(Erasure.client_id == checkin.client_id),
            )
        ).all()
        tz, window = current_app.config[key("TIMEZONE")], current_app.config[key("FOLLOWUP_WINDOW")]
        for booking_id, client_id, incident_id, location, sent_at, locale, email, name in unanswered:
            unsubscribed = session.get(Unsubscribe, client_id) is not None
            made += _insert_ignore(
                session,
                booking_id=booking_id,
                client_id=client_id,
                incident_id=incident_id,
                location=location,
                kind="reminder",
                status="cancelled" if unsubscribed or not email else "scheduled",
                due_at=in_window(max(now, sent_at + reminder_after), tz, window),
                locale=locale,
                email=None if unsubscribed else email,
                client_name=None if unsubscribed else name,
                attempts=0,
                last_error="unsubscribed" if unsubscribed else None,
                created_at=now,
            )
            session.commit()
    return made


def _bookings_with(session: Session, booking_ids: list[str], stmt) -> set[str]:
    """Which of ``booking_ids`` the one-column ``stmt`` (booking ids) finds, in chunks."""
    found: set[str] = set()
    column = stmt.selected_columns[0]
    for offset in range(0, len(booking_ids), 500):
        found.update(session.scalars(stmt.where(column.in_(booking_ids[offset : offset + 500]))))
    return found


# -- dispatching ---------------------------------------------------------------------


@dataclass
class DispatchResult:
    """What one run of the dispatcher did."""

    planned: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    due: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        return f"planned {self.planned}, sent {self.sent}, retry later {self.retry}, failed {self.failed}"


def _due_condition(now: datetime):
    return or_(
        and_(FollowUp.status == "scheduled", FollowUp.due_at <= now),
        and_(FollowUp.status == "sending", FollowUp.claimed_until < now),
    )


def claim(session: Session, limit: int, now: datetime) -> tuple[str, list[int]]:
    """Lease up to ``limit`` due rows to a new token; returns ``(token, ids)``."""
    return claim_rows(session, FollowUp, _due_condition(now), (FollowUp.due_at, FollowUp.id), limit, now, LEASE)


def _failure(
    finisher: Finisher,
    row_id: int,
    token: str,
    attempts: int,
    reason: str,
    permanent: bool,
    result: DispatchResult,
    now: datetime,
) -> None:
    attempts += 1
    result.errors.append(f"follow-up {row_id}: {reason}")
    if permanent or attempts >= MAX_ATTEMPTS:
        finisher.finish(row_id, token, status="failed", attempts=attempts, last_error=reason[:500], claimed_until=None)
        result.failed += 1
    else:
        delay = BACKOFF[min(attempts, len(BACKOFF)) - 1]
        finisher.finish(
            row_id,
            token,
            status="scheduled",
            attempts=attempts,
            last_error=reason[:500],
            claimed_until=None,
            due_at=now + delay,
        )
        result.retry += 1


def send_due_followups(
    limit: int = 500,
    dry_run: bool = False,
    batch_size: int = 50,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> DispatchResult:
    """Plan, then send every due follow-up once. Safe to run from several workers at once.

    Each batch is leased (:func:`claim`), rendered, and sent over one SMTP connection
    outside any transaction. A row is marked sent (only if this run's lease still holds
    it) in a transaction of its own, committed before the next message's content goes to
    the server; the commit overlaps the next message's preparation and envelope
    (:func:`~flask_recovery.outbox.finisher_for`). So a dispatcher that dies at any moment
    leaves at most one mail the server accepted unmarked, the one it had just accepted,
    to go out again (same Message-ID) after the lease: as with a commit right after each
    send. A client erased meanwhile gets nothing: her claimed rows are cancelled
    (``last_error`` ``erased``).
    """
    from . import followup_mail

    recovery = get_recovery()
    session = recovery.session
    result = DispatchResult()
    fixed_now = now
    now = now or utcnow()
    if not (current_app.config[key("BASE_URL")] or current_app.config.get("SERVER_NAME")):
        raise RuntimeError(
            "Set RECOVERY_BASE_URL (e.g. 'https://salon.example.com') so the links in check-in mail work."
        )
    if not current_app.extensions["mail"].default_sender:
        raise RuntimeError("Set MAIL_DEFAULT_SENDER: check-in mail needs a sender address.")
    if dry_run:  # count only: no planning, no claims, no mail
        result.due = session.query(FollowUp).filter(_due_condition(now)).count()
        return result
    result.planned = plan_followups(session, now)
    remaining = limit
    finisher = finisher_for(session, FollowUp)
    try:
        while remaining > 0:
            # every batch's lease counts from its own claim, so a long run keeps its later batches
            now = fixed_now or utcnow()
            mail_batch = followup_mail.MailBatch()
            token, ids = claim(session, min(batch_size, remaining), now)
            if not ids:
                break
            remaining -= len(ids)
            _dispatch_batch(session, recovery, finisher, mail_batch, token, ids, result, now)
            if progress:
                progress(len(ids))
    finally:
        finisher.close()
    return result


def _dispatch_batch(session, recovery, finisher, mail_batch, token, ids, result, now) -> None:
    """Render, send and finish the leased rows ``ids``."""
    from . import followup_mail

    rows = {row.id: row for row in session.scalars(select(FollowUp).where(FollowUp.id.in_(ids)))}
    erased = _erased(session, {row.client_id for row in rows.values()})
    mail_batch.prefetch(session, {row.incident_id for row in rows.values() if row.client_id not in erased})
    messages: dict[int, tuple[Message, int, str]] = {}
    for row_id in ids:  # nothing is committed in this loop, so no row is loaded twice
        row = rows.get(row_id)
        if row is None:
            continue  # deleted since the claim (a client's data erased): nothing to send or mark
        if row.client_id in erased:
            finisher.finish(row_id, token, **ERASED)
            continue
        try:
            booking = _load(recovery.load_booking, row.booking_id)
            incident = session.get(Incident, row.incident_id) if row.incident_id else None
            if booking is not None and booking.status in ("cancelled", "no_show"):
                finisher.finish(row_id, token, status="cancelled", last_error=f"visit {booking.status}")
                continue
            message = followup_mail.render_followup(row, booking, incident, batch=mail_batch)
            messages[row_id] = (message, row.attempts, row.client_id)
        except Exception as error:  # a broken template or row must not stop the batch
            log.exception("follow-up %s could not be rendered", row_id)
            reason = f"render: {type(error).__name__}: {error}"
            _failure(finisher, row_id, token, row.attempts, reason, True, result, now)
    session.commit()
    # a client erased while the batch was being prepared gets nothing either
    erased_since = _erased(session, {client_id for _message, _attempts, client_id in messages.values()})
    for row_id in [i for i, (_m, _a, client_id) in messages.items() if client_id in erased_since]:
        del messages[row_id]
        finisher.finish(row_id, token, **ERASED)
    session.commit()  # nothing stays open while we talk to the SMTP server
    if messages:
        _send_batch(recovery, finisher, token, messages, result, now)
    sent = [row_id for row_id, values, updated in finisher.results() if updated and values.get("status") == "sent"]
    result.sent += len(sent)
    if sent and signals.followup_sent.receivers:
        for row in session.scalars(select(FollowUp).where(FollowUp.id.in_(sent)).order_by(FollowUp.id)):
            signals.send_robust(signals.followup_sent, followup=row)
        session.commit()


def _send_batch(recovery, finisher: Finisher, token, messages, result, now) -> None:
    pending = dict(messages)
    try:
        with recovery.mailer.connection() as conn:
            # our own connection waits for the previous mark right before each DATA; another waits here
            gated = isinstance(conn, TimeoutConnection)
            if gated:
                conn.before_data = finisher.wait
            queue = list(messages.items())
            for index, (row_id, (message, attempts, _client_id)) in enumerate(queue):
                if not gated:
                    finisher.wait()
                try:
                    if gated:  # the next message is serialized while the server reads this one
                        conn.send(message, next_message=queue[index + 1][1][0] if index + 1 < len(queue) else None)
                    else:
                        conn.send(message)
                except smtplib.SMTPResponseException as error:
                    pending.pop(row_id)
                    permanent = 500 <= error.smtp_code < 600
                    detail = (
                        error.smtp_error.decode(errors="replace")
                        if isinstance(error.smtp_error, bytes)
                        else str(error.smtp_error)
                    )
                    _failure(
                        finisher, row_id, token, attempts, f"SMTP {error.smtp_code} {detail}", permanent, result, now
                    )
                except smtplib.SMTPRecipientsRefused as error:
                    pending.pop(row_id)
                    codes = {code for code, _ in error.recipients.values()}
                    permanent = all(500 <= code < 600 for code in codes)
                    reason = f"recipient refused: {error.recipients}"
                    _failure(finisher, row_id, token, attempts, reason, permanent, result, now)
                except (smtplib.SMTPNotSupportedError, UnicodeError, ValueError) as error:
                    # an address this server cannot take (e.g. non-ASCII without SMTPUTF8): this row only
                    pending.pop(row_id)
                    reason = f"address: {type(error).__name__}: {error}"
                    _failure(finisher, row_id, token, attempts, reason, True, result, now)
                else:
                    pending.pop(row_id)
                    finisher.finish(
                        row_id,
                        token,
                        status="sent",
                        sent_at=utcnow(),
                        last_error=None,
                        message_id=message.msgId,
                        claimed_until=None,
                    )
    except (OSError, smtplib.SMTPException) as error:
        for row_id, (_message, attempts, _client_id) in pending.items():
            reason = f"connection: {type(error).__name__}: {error}"
            _failure(finisher, row_id, token, attempts, reason, False, result, now)

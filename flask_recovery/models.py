"""The extension's own tables (``recovery_*``), on a MetaData of their own.

Host data is kept by reference only: ``booking_id`` and ``client_id`` are the host's ids
as strings. Datetimes are stored in UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import DDL
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: The databases the extension runs on (its locks, upserts and date arithmetic are written
#: for these two and tested on both).
SUPPORTED_DATABASES = ("postgresql", "sqlite")


class UnsupportedDatabase(RuntimeError):
    """The host's database is neither PostgreSQL nor SQLite."""


def check_database(dialect_name: str) -> str:
    """``dialect_name`` if the extension supports it, else :class:`UnsupportedDatabase`."""
    if dialect_name not in SUPPORTED_DATABASES:
        raise UnsupportedDatabase(
            f"flask-recovery runs on PostgreSQL and SQLite; this app's database is {dialect_name!r} "
            "(SQLALCHEMY_DATABASE_URI)"
        )
    return dialect_name


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware datetime stored in UTC on every backend.

    Naive datetimes are refused (they are a bug in the caller, never a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: flask-recovery stores timezone-aware datetimes only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the extension's models (own MetaData, naming convention)."""

    metadata = metadata


class Incident(Base):
    """Something that went wrong on a booking (the *Recognize* step)."""

    __tablename__ = "recovery_incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    location: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    conduct: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text)
    corrective_action: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_by_name: Mapped[str | None] = mapped_column(String(120))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    visit_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    visit_ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    #: what the staff member said when reopening the case (migration 0007)
    reopen_note: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    #: When the client next came (or is booked) after this visit, anywhere and at this
    #: incident's location: see :class:`Visit`; kept by ``visits.refresh_next_visits``.
    next_visit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_visit_here_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_recovery_incidents_client_recorded", "client_id", "recorded_at"),)

    def to_dict(self) -> dict[str, Any]:
        """The incident as the JSON API shows it."""
        return {
            "id": self.id,
            "booking_id": self.booking_id,
            "client_id": self.client_id,
            "category": self.category,
            "severity": self.severity,
            "conduct": self.conduct,
            "description": self.description,
            "corrective_action": self.corrective_action,
            "status": self.status,
            "recorded_by": self.recorded_by,
            "recorded_by_name": self.recorded_by_name,
            "visit_ended_at": iso(self.visit_ended_at),
            "recorded_at": iso(self.recorded_at),
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "resolution_note": self.resolution_note,
            "closed_at": iso(self.closed_at),
            "reopened_at": iso(self.reopened_at),
            "reopen_note": self.reopen_note,
            "minutes_to_recognition": _minutes(self.visit_ended_at, self.recorded_at),
            "minutes_to_resolution": _minutes(self.visit_ended_at, self.resolved_at),
        }


class Compensation(Base):
    """A remedy granted (or requested) on an incident: the *Resolve* step.

    ``amount`` is the remedy's value in minor units (for ``percent_discount`` that share of
    the booking's price, for ``redo`` the booking's price). A grant is charged to the
    monthly budget of whoever made it final: the granter, or the approver of a request.
    """

    __tablename__ = "recovery_compensations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("recovery_incidents.id"), index=True)
    booking_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    location: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(BigInteger)
    percent: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_by_role: Mapped[str] = mapped_column(String(32))
    requested_by_name: Mapped[str | None] = mapped_column(String(120))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_by_name: Mapped[str | None] = mapped_column(String(120))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)
    charged_to: Mapped[str | None] = mapped_column(String(64))
    charged_month: Mapped[str | None] = mapped_column(String(7))
    voucher_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    voucher_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_booking_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("requested_by", "idempotency_key"),
        Index("ix_recovery_compensations_charged", "charged_to", "charged_month"),
    )

    def to_dict(self) -> dict[str, Any]:
        """The compensation as the JSON API shows it."""
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "booking_id": self.booking_id,
            "kind": self.kind,
            "amount": self.amount,
            "percent": self.percent,
            "currency": self.currency,
            "status": self.status,
            "note": self.note,
            "requested_by": self.requested_by,
            "created_at": iso(self.created_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "decision_note": self.decision_note,
            "voucher_code": self.voucher_code,
            "voucher_expires_at": iso(self.voucher_expires_at),
            "redeemed_at": iso(self.redeemed_at),
            "redeemed_booking_id": self.redeemed_booking_id,
        }


class BudgetUsage(Base):
    """What one staff member has granted in one calendar month (the authority ledger).

    Grants add to ``spent`` with one conditional UPDATE that refuses to pass the limit,
    so concurrent grants can never overspend.
    """

    __tablename__ = "recovery_budget_usage"

    staff_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)
    grants: Mapped[int] = mapped_column(Integer, default=0)


class Notification(Base):
    """A staff mail waiting to be sent (an outbox row), e.g. a request for approval.

    Mail never leaves inside the request that caused it: ``flask recovery
    send-notifications`` (or the Celery task) claims pending rows and sends them.
    """

    __tablename__ = "recovery_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))


class FollowUp(Base):
    """One post-visit check-in mail (the *Reconnect* step): an outbox row.

    One row per booking and kind (``checkin``, ``reminder``), enforced by a unique
    constraint. ``email`` and ``client_name`` are the only copies of a client's personal
    data the extension keeps, because the mail must be addressed; ``forget-client`` erases
    them. ``status``: ``scheduled`` -> ``sending`` (leased) -> ``sent`` | ``failed``, or
    ``cancelled`` (visit did not take place, client unsubscribed or erased, too soon).
    """

    __tablename__ = "recovery_followups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("recovery_incidents.id"), index=True)
    location: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="scheduled", index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    locale: Mapped[str | None] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    client_name: Mapped[str | None] = mapped_column(String(120))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(200))
    answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("booking_id", "kind"),)

    def to_dict(self) -> dict[str, Any]:
        """The follow-up as the JSON API shows it (no address, no name)."""
        return {
            "id": self.id,
            "booking_id": self.booking_id,
            "incident_id": self.incident_id,
            "kind": self.kind,
            "status": self.status,
            "due_at": iso(self.due_at),
            "sent_at": iso(self.sent_at),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "answer": self.answer,
            "answered_at": iso(self.answered_at),
            "comment": self.comment,
        }


class Unsubscribe(Base):
    """A client who asked for no more check-in mail (by id; no address kept)."""

    __tablename__ = "recovery_unsubscribes"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Flag(Base):
    """Extra attention (``vip``) or a conduct warning (``conduct``) for a client's next visit.

    Set when an incident is recorded (or by a manager by hand), shown on every later
    booking of the client until it is used up by the next completed visit, expires
    (``RECOVERY_VIP_DAYS``) or is lifted. ``reason`` is the note a colleague reads at the
    desk; ``forget-client`` erases it with the other free text about the client.
    ``status``: ``active`` -> ``used`` | ``lifted`` | ``void`` (erased client); an active
    flag past ``expires_at`` counts as expired.
    """

    __tablename__ = "recovery_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="incident")
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("recovery_incidents.id"), index=True)
    booking_id: Mapped[str | None] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(64))
    set_by: Mapped[str | None] = mapped_column(String(64))
    set_by_name: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_by_name: Mapped[str | None] = mapped_column(String(120))
    acknowledgement: Mapped[str | None] = mapped_column(Text)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_booking_id: Mapped[str | None] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(64))
    lift_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_recovery_flags_client_status", "client_id", "status"),)


class BookingHold(Base):
    """A manager's "no online bookings, please call" for a client after serious conduct.

    ``recovery.may_book(client_id)`` reads it; off unless a manager sets it. Lifting keeps
    the row (who lifted it and why) and clears ``active``.
    """

    __tablename__ = "recovery_booking_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("recovery_incidents.id"))
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifted_by: Mapped[str | None] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lift_reason: Mapped[str | None] = mapped_column(Text)


class Visit(Base):
    """A booking the extension heard of (ids and times only): for flags and return rates.

    Filled by ``recovery.booking_created(booking_id)``, ``recovery.visit_completed(
    booking_id)``, by recording an incident on a booking, and from the optional
    ``bookings_between`` loader. No names, no addresses.
    """

    __tablename__ = "recovery_visits"

    booking_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(64))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="booked")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The start of the client's next visit (any status but cancelled) that starts when
    #: this one has ended or later, at any location / at this visit's location. Kept up to
    #: date by ``visits.refresh_next_visits`` whenever a visit is written, so that the
    #: journal's return rates read one column instead of joining every later visit.
    next_visit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_visit_here_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The end of the client's completed visit just before this one (ordered by end,
    #: then booking id), at any location / at this visit's location: the journal finds
    #: a client's first visit of a period by it, without grouping all her visits.
    previous_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_here_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_recovery_visits_client_starts", "client_id", "starts_at"),
        Index("ix_recovery_visits_starts", "starts_at"),
    )


class Erasure(Base):
    """A client erased with ``forget-client``: her id and when (no other data).

    Kept so that nothing is planned or sent to her again and her links stay void.
    """

    __tablename__ = "recovery_erasures"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """One line of the append-only audit trail: who did what, when, on which booking.

    It records ids and actions, never free text about the client. The database itself
    refuses UPDATE and DELETE on this table (a trigger on SQLite and PostgreSQL).
    """

    __tablename__ = "recovery_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48), index=True)
    booking_id: Mapped[str | None] = mapped_column(String(64), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict | None] = mapped_column(JSON)

    def to_dict(self) -> dict[str, Any]:
        """The entry as the JSON API shows it."""
        return {
            "id": self.id,
            "at": iso(self.at),
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "action": self.action,
            "booking_id": self.booking_id,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "data": self.data or {},
        }


def iso(value: datetime | None) -> str | None:
    """``value.isoformat()``, or ``None`` for ``None`` (JSON and exports)."""
    return value.isoformat() if value is not None else None


def _minutes(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() // 60))


# The audit trail is append-only in the database itself. The same statements are run by
# the Alembic migration (migrations/versions/*_audit_append_only.py).
AUDIT_TRIGGERS_SQLITE = [
    "CREATE TRIGGER recovery_audit_log_no_update BEFORE UPDATE ON recovery_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END",
    "CREATE TRIGGER recovery_audit_log_no_delete BEFORE DELETE ON recovery_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END",
    # REPLACE INTO with an existing id deletes without the DELETE trigger (migration 0006)
    "CREATE TRIGGER recovery_audit_log_no_replace BEFORE INSERT ON recovery_audit_log "
    "WHEN EXISTS (SELECT 1 FROM recovery_audit_log WHERE id = NEW.id) "
    "BEGIN SELECT RAISE(ABORT, 'recovery_audit_log is append-only'); END",
]
AUDIT_TRIGGERS_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION recovery_audit_log_refuse() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'recovery_audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER recovery_audit_log_no_change BEFORE UPDATE OR DELETE ON recovery_audit_log "
    "FOR EACH ROW EXECUTE FUNCTION recovery_audit_log_refuse()",
    "CREATE TRIGGER recovery_audit_log_no_truncate BEFORE TRUNCATE ON recovery_audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION recovery_audit_log_refuse()",
]

for _stmt in AUDIT_TRIGGERS_SQLITE:
    event.listen(AuditEntry.__table__, "after_create", DDL(_stmt).execute_if(dialect="sqlite"))
for _stmt in AUDIT_TRIGGERS_POSTGRESQL:
    event.listen(AuditEntry.__table__, "after_create", DDL(_stmt).execute_if(dialect="postgresql"))

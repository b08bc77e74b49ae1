"""Privacy: erase a client's personal data (``forget-client``) and export it (right of access).

The extension keeps a client by her id. The only copies of her name and address are on
her check-in rows (``recovery_followups``), because the mail must be addressed; the free
text staff and she typed (what happened, notes, her comment, flag and hold reasons) may
name her too. :func:`forget_client` blanks all of that and keeps what the anonymous
figures of the KPI journal are made of: ids, times, categories, severities, amounts,
statuses, answers and visits. It also cancels mail not yet sent, voids every link
already sent, voids her active flags and unredeemed vouchers, lifts her booking holds
and records an :class:`~flask_recovery.models.Erasure` so nothing is planned for her
again. The audit trail is append-only and holds ids and codes only, so it keeps its
lines: they name nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..models import (
    AuditEntry,
    BookingHold,
    Compensation,
    Erasure,
    Flag,
    FollowUp,
    Incident,
    Unsubscribe,
    Visit,
    utcnow,
)
from .audit import audit
from .db import savepoint

#: ``last_error`` values on a follow-up that are plain codes, not text from a mail server
#: (which may quote the client's address); forget-client keeps these and replaces the rest.
PLAIN_REASONS = (
    "answered",
    "unsubscribed",
    "erased",
    "visit cancelled",
    "visit no_show",
    "booking unknown to the host",
    "no e-mail address",
    "another check-in within RECOVERY_FOLLOWUP_MIN_INTERVAL",
)

#: What ``last_error`` says on a follow-up cancelled or scrubbed by forget-client.
ERASED = "erased"


@dataclass(frozen=True)
class ErasureResult:
    """What :func:`forget_client` did. ``summary()`` is the line the CLI prints."""

    client_id: str
    #: Whether the extension held anything about the client at all.
    found: bool
    #: ``False`` when she had been erased before (this run only tidied what came since).
    first_time: bool
    erased_at: datetime | None = None
    incidents: int = 0
    compensations: int = 0
    vouchers_voided: int = 0
    followups: int = 0
    followups_cancelled: int = 0
    links_voided: int = 0
    flags: int = 0
    flags_voided: int = 0
    holds: int = 0
    holds_lifted: int = 0

    @property
    def changed(self) -> int:
        """How many rows this run changed (0: nothing was left to erase)."""
        return self.incidents + self.compensations + self.followups + self.flags + self.holds

    def summary(self) -> str:
        """One line for the operator: what was erased, or why nothing was."""
        if not self.found:
            return (
                f"The extension holds no data about client {self.client_id!r}: nothing erased. "
                "Check the id (it is the host's client id)."
            )
        if not self.first_time and not self.changed:
            when = self.erased_at.isoformat(timespec="seconds") if self.erased_at else "earlier"
            return f"Client {self.client_id!r} was already erased ({when}); nothing left to erase."
        return (
            f"Erased client {self.client_id!r}: texts blanked on {self.incidents} incident(s), "
            f"{self.compensations} compensation(s), {self.followups} check-in mail(s), {self.flags} flag(s) "
            f"and {self.holds} booking hold(s); cancelled {self.followups_cancelled} unsent mail(s), "
            f"voided {self.links_voided} link(s), {self.flags_voided} flag(s) and {self.vouchers_voided} "
            f"voucher(s), lifted {self.holds_lifted} hold(s). Anonymous figures are kept."
        )


def _holds_anything(session: Session, client_id: str) -> bool:
    for model in (Incident, Compensation, FollowUp, Flag, BookingHold, Visit, Unsubscribe, AuditEntry, Erasure):
        if session.scalar(select(model.client_id).where(model.client_id == client_id).limit(1)) is not None:
            return True
    return False


def _update(session: Session, model: Any, *where: Any, **values: Any) -> int:
    result = session.execute(update(model).where(*where).values(**values).execution_options(synchronize_session=False))
    return result.rowcount


def forget_client(session: Session, client_id: str) -> ErasureResult:
    """Erase everything that names the client ``client_id``; keep the anonymous figures.

    In one transaction: blank the free text of her incidents (what happened, what will
    change, the resolution note), compensations (reason, decision note), check-in rows
    (address, name, comment, a mail server's error text), flags (reason,
    acknowledgement, lift reason) and booking holds (reason, lift reason); cancel her
    unsent check-ins (``last_error`` ``erased``), void every link already sent (the
    answer and unsubscribe pages then say "no longer valid"), void her active flags and
    unredeemed vouchers (they expire now), lift her holds, record an
    :class:`~flask_recovery.models.Erasure` and an audit entry (ids and counts only).

    Idempotent: a second run changes only what was added since. An id the extension
    knows nothing about changes nothing (``result.found`` is ``False``): a typo must not
    silence mail to another client.
    """
    client_id = str(client_id)
    with savepoint(session):  # the host's transaction, or the CLI's: the caller commits
        if not _holds_anything(session, client_id):
            return ErasureResult(client_id=client_id, found=False, first_time=False)
        now = utcnow()
        earlier = session.get(Erasure, client_id)
        first_time = earlier is None
        if first_time:
            session.add(Erasure(client_id=client_id, erased_at=now))
            session.flush()

        incidents = _update(
            session,
            Incident,
            Incident.client_id == client_id,
            or_(
                Incident.description != "",
                Incident.corrective_action.is_not(None),
                Incident.resolution_note.is_not(None),
                Incident.reopen_note.is_not(None),
            ),
            description="",
            corrective_action=None,
            resolution_note=None,
            reopen_note=None,
        )
        compensations = _update(
            session,
            Compensation,
            Compensation.client_id == client_id,
            or_(Compensation.note.is_not(None), Compensation.decision_note.is_not(None)),
            note=None,
            decision_note=None,
        )
        vouchers = _update(
            session,
            Compensation,
            Compensation.client_id == client_id,
            Compensation.voucher_code.is_not(None),
            Compensation.redeemed_at.is_(None),
            or_(Compensation.voucher_expires_at.is_(None), Compensation.voucher_expires_at > now),
            voucher_expires_at=now,
        )

        cancelled = _update(
            session,
            FollowUp,
            FollowUp.client_id == client_id,
            FollowUp.status.in_(("scheduled", "sending")),
            status="cancelled",
            last_error=ERASED,
            claimed_until=None,
            claim_token=None,
        )
        links = _update(session, FollowUp, FollowUp.client_id == client_id, FollowUp.voided_at.is_(None), voided_at=now)
        followups = _update(
            session,
            FollowUp,
            FollowUp.client_id == client_id,
            or_(FollowUp.email.is_not(None), FollowUp.client_name.is_not(None), FollowUp.comment.is_not(None)),
            email=None,
            client_name=None,
            comment=None,
        )
        _update(
            session,
            FollowUp,
            FollowUp.client_id == client_id,
            FollowUp.last_error.is_not(None),
            FollowUp.last_error.not_in(PLAIN_REASONS),
            last_error=ERASED,
        )

        flags_voided = _update(session, Flag, Flag.client_id == client_id, Flag.status == "active", status="void")
        flags = _update(
            session,
            Flag,
            Flag.client_id == client_id,
            or_(Flag.reason.is_not(None), Flag.acknowledgement.is_not(None), Flag.lift_reason.is_not(None)),
            reason=None,
            acknowledgement=None,
            lift_reason=None,
        )
        holds_lifted = _update(
            session,
            BookingHold,
            BookingHold.client_id == client_id,
            BookingHold.active.is_(True),
            active=False,
            lifted_at=now,
        )
        holds = _update(
            session,
            BookingHold,
            BookingHold.client_id == client_id,
            or_(BookingHold.reason.is_not(None), BookingHold.lift_reason.is_not(None)),
            reason=None,
            lift_reason=None,
        )
        result = ErasureResult(
            client_id=client_id,
            found=True,
            first_time=first_time,
            erased_at=now if first_time else earlier.erased_at,
            incidents=incidents,
            compensations=compensations,
            vouchers_voided=vouchers,
            followups=followups,
            followups_cancelled=cancelled,
            links_voided=links,
            flags=flags,
            flags_voided=flags_voided,
            holds=holds,
            holds_lifted=holds_lifted,
        )
        if first_time or result.changed or vouchers or cancelled or links or flags_voided or holds_lifted:
            audit(
                session,
                "client.erased",
                actor=None,
                client_id=client_id,
                subject_type="client",
                subject_id=client_id,
                data={
                    "first_time": first_time,
                    "incidents": incidents,
                    "compensations": compensations,
                    "vouchers_voided": vouchers,
                    "followups": followups,
                    "followups_cancelled": cancelled,
                    "links_voided": links,
                    "flags": flags,
                    "flags_voided": flags_voided,
                    "holds": holds,
                    "holds_lifted": holds_lifted,
                },
            )
    session.expire_all()  # objects loaded before must not show the erased text
    from .badges import forget_cached_flags

    forget_cached_flags()  # badges cached for this request must not show her void flags
    return result


def is_erased(session: Session, client_id: str) -> bool:
    """Whether ``client_id`` was erased with ``forget-client``."""
    return session.get(Erasure, str(client_id)) is not None


# -- right of access ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    return value


def _rows(session: Session, model: Any, *where: Any, order_by: Any) -> list[dict[str, Any]]:
    columns = [column.key for column in model.__table__.columns]
    stmt = select(model).where(*where).order_by(*order_by)
    return [{name: _plain(getattr(row, name)) for name in columns} for row in session.scalars(stmt)]


def export_client(session: Session, client_id: str) -> dict[str, Any]:
    """Everything the extension holds about ``client_id``, as JSON-ready data.

    Every column of every row that carries her id, internal notes included (what staff
    wrote about the incident, compensation reasons and decisions, flag and hold reasons),
    and the audit lines about her. Reads only; writes nothing.
    """
    client_id = str(client_id)
    erasure = session.get(Erasure, client_id)
    unsubscribe = session.get(Unsubscribe, client_id)
    data: dict[str, Any] = {
        "client_id": client_id,
        "exported_at": utcnow().isoformat(),
        "erased_at": _plain(erasure.erased_at) if erasure else None,
        "unsubscribed_at": _plain(unsubscribe.at) if unsubscribe else None,
        "incidents": _rows(session, Incident, Incident.client_id == client_id, order_by=(Incident.id,)),
        "compensations": _rows(session, Compensation, Compensation.client_id == client_id, order_by=(Compensation.id,)),
        "followups": _rows(session, FollowUp, FollowUp.client_id == client_id, order_by=(FollowUp.id,)),
        "flags": _rows(session, Flag, Flag.client_id == client_id, order_by=(Flag.id,)),
        "booking_holds": _rows(session, BookingHold, BookingHold.client_id == client_id, order_by=(BookingHold.id,)),
        "visits": _rows(session, Visit, Visit.client_id == client_id, order_by=(Visit.starts_at, Visit.booking_id)),
        "audit": _rows(session, AuditEntry, AuditEntry.client_id == client_id, order_by=(AuditEntry.id,)),
    }
    return data


__all__ = ["ErasureResult", "export_client", "forget_client", "is_erased"]

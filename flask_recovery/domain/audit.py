"""The append-only audit trail: ids and actions, never free text about a client."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..entities import Staff
from ..models import AuditEntry, utcnow


def audit(
    session: Session,
    action: str,
    *,
    actor: Staff | None,
    booking_id: str | None = None,
    client_id: str | None = None,
    subject_type: str | None = None,
    subject_id: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit entry to ``session`` (committed with the action it records)."""
    entry = AuditEntry(
        at=utcnow(),
        actor_id=actor.id if actor else None,
        actor_role=actor.role if actor else None,
        action=action,
        booking_id=booking_id,
        client_id=client_id,
        subject_type=subject_type,
        subject_id=str(subject_id) if subject_id is not None else None,
        data=data or None,
    )
    session.add(entry)
    return entry


def history_for_booking(session: Session, booking_id: str, limit: int = 200) -> list[AuditEntry]:
    """The newest audit entries for a booking, newest first."""
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.booking_id == booking_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))

"""Booking holds: a manager's "no online bookings, please call" for one client.

A booking hold ("no online bookings, please call") is off unless a manager sets it;
:func:`may_book` reads it. Setting and lifting one each take a reason, and raise
:class:`~.access.FlagConflict` when the hold is not in the state they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import permitted
from ..entities import Staff
from ..errors import InvalidInput
from ..i18n import gettext as _
from ..models import BookingHold, Incident, iso, utcnow
from .access import FlagConflict, _clean, _require, client_in_scope
from .audit import audit


@dataclass(frozen=True)
class BookingPermission:
    """What :func:`may_book` answers: truthy when the client may book online.

    ``reason`` is the manager's note for staff (show the client a neutral "please call
    us" instead); ``hold_id`` and ``set_at`` name the hold when there is one.
    """

    allowed: bool
    reason: str | None = None
    hold_id: int | None = None
    set_at: datetime | None = None

    def __bool__(self) -> bool:
        return self.allowed

    def to_dict(self) -> dict[str, Any]:
        """The answer as the JSON API shows it."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "hold_id": self.hold_id,
            "set_at": iso(self.set_at),
        }


def active_hold(session: Session, client_id: str) -> BookingHold | None:
    """The client's active booking hold, if a manager set one."""
    return session.scalar(
        select(BookingHold)
        .where(BookingHold.client_id == client_id, BookingHold.active.is_(True))
        .order_by(BookingHold.set_at.desc(), BookingHold.id.desc())
        .limit(1)
    )


def may_book(session: Session, client_id: str) -> BookingPermission:
    """Whether the client may book online: allowed unless a manager set a hold."""
    hold = active_hold(session, str(client_id))
    if hold is None:
        return BookingPermission(allowed=True)
    return BookingPermission(allowed=False, reason=hold.reason, hold_id=hold.id, set_at=hold.set_at)


def set_hold(
    session: Session, client_id: Any, staff: Staff | None, reason: Any = None, incident_id: Any = None
) -> BookingHold:
    """A manager asks not to accept online bookings from the client. 409 if already on."""
    _require(staff, "hold.manage")
    client_id = client_in_scope(session, client_id, staff)
    reason = _clean(reason, "reason", required=True)
    if incident_id is not None:
        if isinstance(incident_id, bool) or not isinstance(incident_id, int):
            raise InvalidInput(_("incident_id must be an incident id."), field="incident_id")
        incident = session.get(Incident, incident_id) if 0 < incident_id < 2**31 else None
        if incident is None or incident.client_id != client_id:
            raise InvalidInput(_("incident_id must be an incident of this client."), field="incident_id")
    if active_hold(session, client_id) is not None:
        raise FlagConflict(_("Online booking is already paused for this client."))
    hold = BookingHold(
        client_id=client_id, active=True, reason=reason, incident_id=incident_id, set_by=staff.id, set_at=utcnow()
    )
    session.add(hold)
    session.flush()
    audit(session, "hold.set", actor=staff, client_id=client_id, subject_type="hold", subject_id=hold.id)
    session.flush()
    return hold


def lift_hold(session: Session, client_id: Any, staff: Staff | None, reason: Any = None) -> BookingHold:
    """A manager lifts the hold, with a reason. 409 when there is none."""
    _require(staff, "hold.manage")
    client_id = client_in_scope(session, client_id, staff)
    reason = _clean(reason, "reason", required=True)
    hold = active_hold(session, client_id)
    if hold is None:
        raise FlagConflict(_("Online booking is not paused for this client."))
    result = session.execute(
        update(BookingHold)
        .where(BookingHold.id == hold.id, BookingHold.active.is_(True))
        .values(active=False, lifted_by=staff.id, lifted_at=utcnow(), lift_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # nothing written: it changed since we looked
        raise FlagConflict(_("Online booking is not paused for this client."))
    audit(session, "hold.lifted", actor=staff, client_id=client_id, subject_type="hold", subject_id=hold.id)
    session.flush()
    session.refresh(hold)
    return hold


# -- as the API shows it -----------------------------------------------------------------


def can_read_hold_reason(staff: Staff) -> bool:
    """Whether ``staff`` may read a manager's hold reasons: roles with ``conduct.view`` or
    ``hold.manage``. The one home of that rule (the API, the client record, the pages)."""
    config = current_app.config
    return permitted(config, "conduct.view", staff.role) or permitted(config, "hold.manage", staff.role)


def hold_to_dict(hold: BookingHold, show_reason: bool = True) -> dict[str, Any]:
    """The booking hold as the JSON API shows it; without ``show_reason`` its free text
    (``reason``, ``lift_reason``) is ``None``."""
    return {
        "id": hold.id,
        "client_id": hold.client_id,
        "active": hold.active,
        "reason": hold.reason if show_reason else None,
        "incident_id": hold.incident_id,
        "set_by": hold.set_by,
        "set_at": iso(hold.set_at),
        "lifted_by": hold.lifted_by,
        "lifted_at": iso(hold.lifted_at),
        "lift_reason": hold.lift_reason if show_reason else None,
    }

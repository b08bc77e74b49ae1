"""Who may act on which client: what a manager's action on flags and holds checks first.

A client the staff member may not see (404, :func:`client_in_scope`), a role that may not
do it (403) or malformed text (422), both by the rules of :mod:`.incidents`, and a flag or
hold in a state that does not allow it (409, :class:`FlagConflict`). Shared by
:mod:`.flags` and :mod:`.holds`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from ..entities import Booking, Staff
from ..errors import Conflict, NotFound
from ..i18n import gettext as _
from ..models import Flag, Incident, Visit


class FlagConflict(Conflict):
    """The flag or hold is not in a state that allows this (used, lifted, expired, seen)."""


def client_in_scope(session: Session, client_id: Any, staff: Staff, booking: Booking | None = None) -> str:
    """The client id if ``staff`` may see this client, else 404.

    Staff without a location see every client the extension knows (a visit, an incident
    or a flag). Staff of a location see a client with a record at their location, or
    one whose booking (``booking``, already loaded) they may see.
    """
    if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
        raise NotFound(_("No such client."))
    if booking is not None and booking.client_id == client_id and staff.can_see(booking):
        return client_id
    checks = []
    for model in (Visit, Incident, Flag):
        condition = model.client_id == client_id
        if staff.location is not None:
            condition = condition & (model.location == staff.location)
        checks.append(exists().where(condition))
    if session.scalar(select(or_(*checks))):
        return client_id
    raise NotFound(_("No such client."))


def _require(staff: Staff | None, action: str) -> Staff:
    from .incidents import require_permission

    return require_permission(staff, action)


def _clean(value: Any, field: str, *, required: bool) -> str | None:
    from .incidents import clean_text

    return clean_text(value, field, required=required)

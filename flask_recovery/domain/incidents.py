"""Recognize: recording, resolving, reopening and closing incidents on a booking."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import signals
from ..config import CONDUCT_CATEGORY, SEVERITIES, category_keys, key, permitted
from ..entities import Booking, Staff
from ..errors import Conflict, InvalidInput, NotAllowed, NotAuthenticated, NotFound, not_a_choice
from ..errors import required as _required
from ..i18n import gettext as _
from ..models import BookingHold, Compensation, Flag, FollowUp, Incident, Visit, iso, utcnow
from ..vocabulary import category_label, status_label
from . import flags
from .access import client_in_scope
from .audit import audit, history_for_booking
from .badges import forget_cached_flags
from .holds import BookingPermission, can_read_hold_reason, hold_to_dict

#: Statuses from which each transition may start.
RESOLVABLE = ("open", "reopened")
REOPENABLE = ("resolved", "closed")
CLOSABLE = ("resolved",)


def require_staff(staff: Staff | None) -> Staff:
    """Return ``staff`` if someone is logged in; raise 401 otherwise."""
    if staff is None:
        raise NotAuthenticated(_("Log in as a staff member first."))
    return staff


def require_permission(staff: Staff | None, action: str) -> Staff:
    """Return ``staff`` if logged in and allowed ``action``; raise 401/403 otherwise."""
    require_staff(staff)
    if not permitted(current_app.config, action, staff.role):
        raise NotAllowed(_("Your role may not do this."))
    return staff


def clean_text(value: Any, field: str, *, required: bool) -> str | None:
    """Validate one free-text field: a string, no NUL bytes, within ``MAX_TEXT_LENGTH``.

    Refusals (422, naming ``field``): ``required``, ``not_text``, ``control_characters``,
    ``too_long``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _required(field)
        return None
    if not isinstance(value, str):
        raise InvalidInput(_("Write this as text."), field=field, code="not_text")
    if "\x00" in value:
        raise InvalidInput(_("Remove the invisible control characters."), field=field, code="control_characters")
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    limit = current_app.config[key("MAX_TEXT_LENGTH")]
    if len(value) > limit:
        raise InvalidInput(
            _("This text is too long: %(count)s characters, at most %(limit)s.", count=len(value), limit=limit),
            field=field,
            code="too_long",
        )
    return value


def _check_choice(value: Any, field: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value is None or value == "":
        raise _required(field)
    if not isinstance(value, str) or value not in choices:
        raise not_a_choice(field)
    return value


def record_incident(
    session: Session,
    booking: Booking,
    staff: Staff | None,
    *,
    category: Any = None,
    severity: Any = None,
    description: Any = None,
    corrective_action: Any = None,
    conduct: Any = False,
    now: datetime | None = None,
) -> Incident:
    """Record what went wrong on ``booking``; return the new open incident.

    The client is flagged for her next visit in the same transaction: ``vip`` (extra
    attention), or for ``conduct=True`` (the category ``client_conduct``: client abuse of
    staff, which earns no compensation) a ``conduct`` warning. The booking is remembered
    as a visit. Signals: ``incident_recorded``, then ``client_flagged``.
    """
    require_permission(staff, "incident.record")
    if not staff.can_see(booking):
        raise NotFound(_("No such booking."))
    if not isinstance(conduct, bool):
        raise InvalidInput(_("Say whether this is client conduct: true or false."), field="conduct", code="not_boolean")
    if conduct and category in (None, ""):
        category = CONDUCT_CATEGORY
    category = _check_choice(category, "category", category_keys(current_app.config))
    if conduct and category != CONDUCT_CATEGORY:
        raise InvalidInput(
            _(
                "Abuse of staff by the client is recorded under “%(category)s”; choose that category.",
                category=category_label(CONDUCT_CATEGORY),
            ),
            field="category",
            code="conduct_category",
        )
    conduct = category == CONDUCT_CATEGORY
    severity = _check_choice(severity, "severity", SEVERITIES)
    description = clean_text(description, "description", required=True)
    corrective_action = clean_text(corrective_action, "corrective_action", required=False)

    incident = Incident(
        booking_id=booking.id,
        client_id=booking.client_id,
        location=booking.location,
        category=category,
        severity=severity,
        conduct=conduct,
        description=description,
        corrective_action=corrective_action,
        status="open",
        recorded_by=staff.id,
        recorded_by_name=staff.name[:120],
        staff_id=booking.staff_id,
        visit_started_at=booking.starts_at,
        visit_ended_at=booking.ends_at,
        recorded_at=now or utcnow(),
        reopen_count=0,
    )
    session.add(incident)
    session.flush()
    audit(
        session,
        "incident.recorded",
        actor=staff,
        booking_id=booking.id,
        client_id=booking.client_id,
        subject_type="incident",
        subject_id=incident.id,
        data={"category": category, "severity": severity, "conduct": conduct},
    )
    flag = flags.flag_for_incident(session, incident, staff, incident.recorded_at)
    flags.upsert_visit(session, booking)
    session.flush()
    forget_cached_flags()
    signals.send_robust(signals.incident_recorded, incident=incident, booking=booking, staff=staff)
    signals.send_robust(signals.client_flagged, flag=flag, booking=booking, staff=staff, cause="set")
    return incident


def get_incident(session: Session, incident_id: Any, staff: Staff | None) -> Incident:
    """The incident with ``incident_id`` if ``staff`` may see it; 401/404 otherwise."""
    require_staff(staff)
    return get_scoped(session, Incident, incident_id, staff, _("No such incident."))


def get_scoped(session: Session, model: type, raw_id: Any, staff: Staff, missing: Any):
    """The row of ``model`` with id ``raw_id`` if ``staff``'s location may see it, else 404.

    Ids come from URLs: anything that is not a positive 32-bit integer is simply unknown.
    """
    try:
        row_id = int(raw_id)
    except (TypeError, ValueError):
        raise NotFound(missing) from None
    row = session.get(model, row_id) if 0 < row_id < 2**31 else None
    if row is None or (staff.location is not None and row.location != staff.location):
        raise NotFound(missing)
    return row


def parse_month(value: Any) -> str:
    """A ``YYYY-MM`` month from a query string, or :class:`InvalidInput` naming ``month``."""
    if not isinstance(value, str) or not re.fullmatch(r"(19|20|21)\d\d-(0[1-9]|1[0-2])", value):
        raise InvalidInput(_("Give the month as year and month, like 2026-11."), field="month", code="invalid_month")
    return value


def _transition(
    session: Session,
    incident_id: Any,
    staff: Staff | None,
    *,
    action: str,
    permission: str,
    from_statuses: tuple[str, ...],
    values: dict[str, Any],
    note: Any = None,
) -> Incident:
    """Move an incident between statuses with a conditional UPDATE (no read-then-write race)."""
    require_permission(staff, permission)
    incident = get_incident(session, incident_id, staff)
    note = clean_text(note, "note", required=False)
    for column in ("resolution_note", "reopen_note"):  # the action's own note column
        if column in values:
            values[column] = note
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident.id, Incident.status.in_(from_statuses))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # nothing written: another desk moved it first
        current = session.scalar(select(Incident.status).where(Incident.id == incident.id))
        raise Conflict(
            _("Someone has just changed this case: it is now %(status)s.", status=status_label(current)),
            code="invalid_transition",
        )
    audit(
        session,
        f"incident.{action}",
        actor=staff,
        booking_id=incident.booking_id,
        client_id=incident.client_id,
        subject_type="incident",
        subject_id=incident.id,
        data={"status": values["status"]},
    )
    session.flush()
    session.refresh(incident)
    return incident


def resolve_incident(session: Session, incident_id: Any, staff: Staff | None, note: Any = None) -> Incident:
    """Mark the case resolved (the follow-up clock starts). 409 unless open or reopened."""
    now = utcnow()
    return _transition(
        session,
        incident_id,
        staff,
        action="resolved",
        permission="incident.resolve",
        from_statuses=RESOLVABLE,
        values={
            "status": "resolved",
            "resolved_at": now,
            "resolved_by": staff.id if staff else None,
            "resolution_note": None,
        },
        note=note,
    )


def reopen_incident(session: Session, incident_id: Any, staff: Staff | None, note: Any = None) -> Incident:
    """Reopen a resolved or closed case. 409 unless resolved or closed."""
    return _transition(
        session,
        incident_id,
        staff,
        action="reopened",
        permission="incident.reopen",
        from_statuses=REOPENABLE,
        values={
            "status": "reopened",
            "reopened_at": utcnow(),
            "closed_at": None,
            "reopen_count": Incident.reopen_count + 1,
            "reopen_note": None,
        },
        note=note,
    )


def close_incident(session: Session, incident_id: Any, staff: Staff | None, note: Any = None) -> Incident:
    """Close a resolved case for good (the client confirmed). 409 unless resolved."""
    return _transition(
        session,
        incident_id,
        staff,
        action="closed",
        permission="incident.resolve",
        from_statuses=CLOSABLE,
        values={"status": "closed", "closed_at": utcnow()},
        note=note,
    )


def incidents_for_booking(session: Session, booking_id: str) -> list[Incident]:
    """The booking's incidents, newest first."""
    stmt = (
        select(Incident)
        .where(Incident.booking_id == booking_id)
        .order_by(Incident.recorded_at.desc(), Incident.id.desc())
    )
    return list(session.scalars(stmt))


def client_summary(
    session: Session, client_id: str, *, exclude_booking_id: str | None = None, limit: int = 5
) -> tuple[int, list[Incident]]:
    """How many incidents the client had on other bookings, and the newest ``limit`` of them.

    One query whatever the length of her history (a window count beside a limited list).
    """
    condition = Incident.client_id == client_id
    if exclude_booking_id is not None:
        condition = condition & (Incident.booking_id != exclude_booking_id)
    rows = session.execute(
        select(Incident, func.count().over().label("total"))
        .where(condition)
        .order_by(Incident.recorded_at.desc(), Incident.id.desc())
        .limit(limit)
    ).all()
    return (rows[0].total if rows else 0), [row[0] for row in rows]


def booking_record(session: Session, booking: Booking, staff: Staff | None) -> dict[str, Any]:
    """Everything the extension knows about ``booking``, as the staff member may see it."""
    require_staff(staff)
    if not staff.can_see(booking):
        raise NotFound(_("No such booking."))
    from .compensations import compensations_for_booking

    incidents = incidents_for_booking(session, booking.id)
    show_conduct = permitted(current_app.config, "conduct.view", staff.role)
    return {
        "booking": {
            "id": booking.id,
            "client_id": booking.client_id,
            "service": booking.service,
            "starts_at": booking.starts_at.isoformat(),
            "ends_at": booking.ends_at.isoformat(),
            "status": booking.status,
            "price": booking.price,
            "currency": current_app.config[key("CURRENCY")],
        },
        "incidents": [_visible(i.to_dict(), show_conduct) for i in incidents],
        "compensations": [c.to_dict() for c in compensations_for_booking(session, booking.id)],
        "flags": [
            dict(flags.flag_to_dict(flag, show_conduct), applies=flags.applies(flag, booking.id, booking.ends_at))
            for flag in flags.active_flags(session, booking.client_id)
        ],
        "followups": [
            f.to_dict()
            for f in session.scalars(select(FollowUp).where(FollowUp.booking_id == booking.id).order_by(FollowUp.id))
        ],
        "history": [e.to_dict() for e in history_for_booking(session, booking.id)],
    }


#: What a role without ``conduct.view`` may read of a conduct case: ids, kinds, statuses and
#: times. A whitelist: any field not named here (every free text, and any added later) is hidden.
RESTRICTED_FIELDS = frozenset(
    {
        "id", "booking_id", "client_id", "category", "severity", "conduct", "status", "recorded_by",
        "recorded_by_name", "visit_ended_at", "recorded_at", "resolved_at", "resolved_by", "closed_at",
        "reopened_at", "minutes_to_recognition", "minutes_to_resolution", "restricted",
    }
)  # fmt: skip


def _visible(incident: dict[str, Any], show_conduct: bool) -> dict[str, Any]:
    """Hide the text of a conduct case from roles not allowed to read it (a whitelist)."""
    if incident["conduct"] and not show_conduct:
        hidden = {name: None for name in incident if name not in RESTRICTED_FIELDS}
        incident = dict(incident, **hidden, restricted=True)
    return incident


# -- the client's history ------------------------------------------------------------------


@dataclass
class VisitEntry:
    """One visit of the client, with what happened on it (for the client page and API)."""

    booking_id: str
    starts_at: datetime | None
    ends_at: datetime | None = None
    status: str | None = None
    location: str | None = None
    staff_id: str | None = None
    completed_at: datetime | None = None
    incidents: list[Incident] = field(default_factory=list)
    compensations: dict[int, list[Compensation]] = field(default_factory=dict)
    followups: list[FollowUp] = field(default_factory=list)
    flags_used: list[Flag] = field(default_factory=list)
    sort_key: datetime | None = None


@dataclass
class ClientRecord:
    """Everything the extension knows about a client, as one staff member may see it."""

    client_id: str
    visits: list[VisitEntry]
    active_flags: list[Flag]
    past_flags: list[Flag]
    hold: BookingHold | None
    holds: list[BookingHold]
    show_conduct: bool
    show_hold_reason: bool = False

    @property
    def display(self) -> str | None:
        """The badge's type: ``conduct``, ``vip`` or ``None``."""
        return flags.display_type(self.active_flags)

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON API shows it (newest first)."""
        show = self.show_conduct
        return {
            "client_id": self.client_id,
            "display": self.display,
            "may_book": BookingPermission(
                allowed=self.hold is None,
                reason=self.hold.reason if self.hold and self.show_hold_reason else None,
                hold_id=self.hold.id if self.hold else None,
                set_at=self.hold.set_at if self.hold else None,
            ).to_dict(),
            "active_flags": [flags.flag_to_dict(f, show) for f in self.active_flags],
            "past_flags": [flags.flag_to_dict(f, show) for f in self.past_flags],
            "holds": [hold_to_dict(h, self.show_hold_reason) for h in self.holds],
            "visits": [
                {
                    "booking_id": v.booking_id,
                    "starts_at": iso(v.starts_at),
                    "ends_at": iso(v.ends_at),
                    "status": v.status,
                    "location": v.location,
                    "staff_id": v.staff_id,
                    "completed_at": iso(v.completed_at),
                    "incidents": [
                        dict(
                            _visible(i.to_dict(), show),
                            compensations=[c.to_dict() for c in v.compensations.get(i.id, [])],
                        )
                        for i in v.incidents
                    ],
                    "followups": [f.to_dict() for f in v.followups],
                    "flags_used": [f.id for f in v.flags_used],
                }
                for v in self.visits
            ],
        }


def client_record(
    session: Session, client_id: Any, staff: Staff | None, booking: Booking | None = None
) -> ClientRecord:
    """The client's visits (newest first) with incidents, remedies, vouchers and answers,
    her flags and booking holds. 401/403 without ``client.view``; 404 for a client unknown
    to ``staff`` (``booking``, one of hers that ``staff`` may see, makes her known).

    Staff of a location see that location's visits and flag history, and every active
    flag (flags follow her to every branch). Seven queries whatever her history.
    """
    require_permission(staff, "client.view")
    client_id = client_in_scope(session, client_id, staff, booking)
    here = staff.location

    def scoped(stmt, model):
        return stmt.where(model.location == here) if here is not None else stmt

    now = utcnow()
    entries: dict[str, VisitEntry] = {}
    for visit in session.scalars(scoped(select(Visit).where(Visit.client_id == client_id), Visit)):
        entries[visit.booking_id] = VisitEntry(
            booking_id=visit.booking_id,
            starts_at=visit.starts_at,
            ends_at=visit.ends_at,
            status=visit.status,
            location=visit.location,
            staff_id=visit.staff_id,
            completed_at=visit.completed_at,
            sort_key=visit.starts_at,
        )
    incidents = session.scalars(
        scoped(select(Incident).where(Incident.client_id == client_id), Incident).order_by(
            Incident.recorded_at.desc(), Incident.id.desc()
        )
    ).all()
    for incident in incidents:
        entry = entries.get(incident.booking_id)
        if entry is None:
            entry = entries[incident.booking_id] = VisitEntry(
                booking_id=incident.booking_id,
                starts_at=incident.visit_started_at,
                ends_at=incident.visit_ended_at,
                location=incident.location,
                staff_id=incident.staff_id,
                sort_key=incident.visit_started_at or incident.recorded_at,
            )
        entry.incidents.append(incident)
    for compensation in session.scalars(
        scoped(select(Compensation).where(Compensation.client_id == client_id), Compensation).order_by(
            Compensation.created_at.desc(), Compensation.id.desc()
        )
    ):
        entry = entries.get(compensation.booking_id)
        if entry is not None:
            entry.compensations.setdefault(compensation.incident_id, []).append(compensation)
    for followup in session.scalars(
        scoped(select(FollowUp).where(FollowUp.client_id == client_id), FollowUp).order_by(FollowUp.id)
    ):
        entry = entries.get(followup.booking_id)
        if entry is None:
            entry = entries[followup.booking_id] = VisitEntry(
                booking_id=followup.booking_id,
                starts_at=None,
                location=followup.location,
                sort_key=followup.created_at,
            )
        entry.followups.append(followup)
    active: list[Flag] = []
    past: list[Flag] = []
    for flag in session.scalars(
        select(Flag)
        .where(Flag.client_id == client_id, Flag.status != "void")
        .order_by(Flag.created_at.desc(), Flag.id.desc())
    ):
        if flags.is_active(flag, now):
            active.append(flag)
        elif here is None or flag.location == here:
            past.append(flag)
        if flag.used_booking_id in entries:
            entries[flag.used_booking_id].flags_used.append(flag)
    holds = list(
        session.scalars(
            select(BookingHold)
            .where(BookingHold.client_id == client_id)
            .order_by(BookingHold.set_at.desc(), BookingHold.id.desc())
        )
    )
    oldest = datetime.min.replace(tzinfo=UTC)
    visits = sorted(entries.values(), key=lambda v: (v.sort_key or oldest, v.booking_id), reverse=True)
    return ClientRecord(
        client_id=client_id,
        visits=visits,
        active_flags=active,
        past_flags=past,
        hold=next((h for h in holds if h.active), None),
        holds=holds,
        show_conduct=permitted(current_app.config, "conduct.view", staff.role),
        show_hold_reason=can_read_hold_reason(staff),
    )

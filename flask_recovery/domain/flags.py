"""The next visit: VIP and conduct flags, and the visits the extension hears of.

A flag is a note for the client's next visit: ``vip`` (extra attention after an incident)
or ``conduct`` (a warning after abuse of staff: manager on duty, never a VIP; it wins over
``vip`` on display). Recording an incident sets one; a manager may set or lift one by hand.
It shows on every later booking of the client until her next completed visit uses it up,
it expires (``RECOVERY_VIP_DAYS``) or a manager lifts it.

Which bookings a flag is for (:func:`applies`): every booking of the client that ends after
the flag was set, except the booking whose incident set it. Active flags follow the client to every
branch (a flag set at one desk must reach the desk she comes to next); the history of
used, lifted and expired flags stays within each branch.

Beside this module: the reason a flag carries (:mod:`.reasons`), the badge's per-request
cache (:mod:`.badges`), the checks before a manager's action (:mod:`.access`) and booking
holds (:mod:`.holds`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import signals
from ..config import key, permitted
from ..entities import Booking, Staff, normalize_booking, normalize_datetime
from ..errors import InvalidInput, NotFound, RecoveryError
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Flag, Incident, Visit, check_database, iso, utcnow
from .access import FlagConflict, _clean, _require, client_in_scope
from .audit import audit
from .badges import badge_cache, forget_cached_flags
from .holds import lift_hold, set_hold  # noqa: F401 (re-exported: their old address still works)
from .reasons import compose_reason
from .visits import Change, lock_for_write, refresh_next_visits, visit_row

#: Flag types (stable keys): extra attention, and a warning that protects staff.
FLAG_TYPES = ("vip", "conduct")

#: How many ids go into one ``IN (...)`` list.
_CHUNK = 500

#: What a role without ``conduct.view`` reads on a conduct warning instead of the note.
CONDUCT_NOTICE = _l("Conduct warning: ask the manager on duty to be present. No VIP treatment.")


# -- reading the rules -------------------------------------------------------------------


def is_active(flag: Flag, now: datetime | None = None) -> bool:
    """Whether the flag still counts: status ``active`` and not past its expiry."""
    now = now or utcnow()
    return flag.status == "active" and (flag.expires_at is None or flag.expires_at > now)


def state_of(flag: Flag, now: datetime | None = None) -> str:
    """``active``, ``expired``, ``used``, ``lifted`` or ``void`` (an erased client)."""
    if flag.status == "active" and not is_active(flag, now):
        return "expired"
    return flag.status


def applies(flag: Any, booking_id: str, ends_at: datetime | None) -> bool:
    """Whether ``flag`` is for the booking: one that ends after the flag was set, other than
    the booking whose incident set it (that visit is where it went wrong)."""
    if flag.source == "incident" and flag.booking_id == booking_id:
        return False
    return ends_at is None or flag.created_at < ends_at


def display_type(flags: Iterable[Any]) -> str | None:
    """The badge's type for these flags: ``conduct`` wins over ``vip``; ``None`` for none."""
    types = {flag.type for flag in flags}
    if "conduct" in types:
        return "conduct"
    return "vip" if "vip" in types else None


def shown_reason(flag: Any, show_conduct: bool) -> str | None:
    """The reason as ``staff`` may read it: a conduct note only for ``conduct.view`` roles."""
    if flag.type == "conduct" and not show_conduct:
        return str(CONDUCT_NOTICE)
    return flag.reason


def _active_condition(now: datetime):
    return (Flag.status == "active") & or_(Flag.expires_at.is_(None), Flag.expires_at > now)


def active_flags(session: Session, client_id: str, now: datetime | None = None) -> list[Flag]:
    """The client's active flags (not used up, lifted or expired), oldest first."""
    return active_flags_for_clients(session, [client_id], now).get(client_id, [])


def active_flags_for_clients(
    session: Session, client_ids: Iterable[str], now: datetime | None = None
) -> dict[str, list[Flag]]:
    """Active flags by client id, oldest first; one query per 500 clients."""
    now = now or utcnow()
    ids = sorted({str(c) for c in client_ids})
    found: dict[str, list[Flag]] = {c: [] for c in ids}
    for start in range(0, len(ids), _CHUNK):
        stmt = (
            select(Flag)
            .where(Flag.client_id.in_(ids[start : start + _CHUNK]), _active_condition(now))
            .order_by(Flag.created_at, Flag.id)
        )
        for flag in session.scalars(stmt):
            found[flag.client_id].append(flag)
    return found


class _Ref:
    """What deciding a booking's flags needs: its id, client, end and location."""

    __slots__ = ("id", "client_id", "ends_at", "location", "status")

    def __init__(
        self,
        id: str,  # noqa: A002
        client_id: str,
        ends_at: datetime | None,
        location: str | None = None,
        status: str | None = None,
    ) -> None:
        self.id = id
        self.client_id = client_id
        self.ends_at = ends_at
        self.location = location
        self.status = status


def flags_for_booking(session: Session, booking: Booking, now: datetime | None = None) -> list[Flag]:
    """The client's active flags that are for ``booking`` (what its badge shows)."""
    return [f for f in active_flags(session, booking.client_id, now) if applies(f, booking.id, booking.ends_at)]


def flags_for_bookings(session: Session, bookings: Iterable[str | Booking]) -> dict[str, list[Flag]]:
    """Active flags for many bookings at once, by booking id (ids or ``Booking`` objects).

    ``Booking`` objects (or a host's rows with ``id``, ``client_id``, an aware ``ends_at``
    and ``location``) cost one query in all (per 500 clients). Ids cost one more query
    (the visits the extension knows give their client) and a call of the host's booking
    loader for each id it has not heard of. An unknown id maps to ``[]``. Inside a request
    the result also fills the badge's cache, so ``recovery_badge`` then costs no query.
    """
    from ..proxies import get_recovery

    refs: dict[str, _Ref] = {}
    wanted: list[str] = []
    ids: list[str] = []
    rows: list[_Ref] = []  # a host's own rows: the badge reads their location itself
    for item in bookings:
        if isinstance(item, Booking):
            item = normalize_booking(item)
            refs[item.id] = _Ref(item.id, item.client_id, item.ends_at, item.location, item.status)
            wanted.append(item.id)
        elif hasattr(item, "client_id"):
            ends_at = getattr(item, "ends_at", None)
            if isinstance(ends_at, datetime):
                ends_at = normalize_datetime(ends_at, "ends_at")
            ref = _Ref(str(item.id), str(item.client_id), ends_at)
            rows.append(ref)
            wanted.append(ref.id)
        else:
            ids.append(str(item))
            wanted.append(str(item))
    missing = sorted(set(ids) - set(refs))
    for start in range(0, len(missing), _CHUNK):
        visits = session.execute(
            select(
                Visit.booking_id, Visit.client_id, Visit.ends_at, Visit.starts_at, Visit.location, Visit.status
            ).where(Visit.booking_id.in_(missing[start : start + _CHUNK]))
        )
        for booking_id, client_id, ends_at, starts_at, location, status in visits:
            refs[booking_id] = _Ref(booking_id, client_id, ends_at or starts_at, location, status)
    unknown = [booking_id for booking_id in missing if booking_id not in refs]
    if unknown:  # one call of the host's bulk loader (or its per-id loader) for the rest
        try:
            loaded = get_recovery().load_bookings(unknown)
        except RecoveryError:  # e.g. a naive time refused by RECOVERY_NAIVE_DATETIMES="error"
            loaded = {}
        for booking in loaded.values():
            refs[booking.id] = _Ref(booking.id, booking.client_id, booking.ends_at, booking.location, booking.status)
    now = utcnow()
    clients = {ref.client_id for ref in refs.values()} | {ref.client_id for ref in rows}
    by_client = active_flags_for_clients(session, clients, now)
    used_for = _use_up_completed(session, [refs[b] for b in dict.fromkeys(wanted) if b in refs], by_client, now)
    cache = badge_cache()
    if cache is not None:
        cache.remember(by_client, refs.values())
    for ref in rows:
        refs.setdefault(ref.id, ref)
    result: dict[str, list[Flag]] = {}
    for booking_id in wanted:
        ref = refs.get(booking_id)
        if booking_id in used_for:  # a visit that took place keeps the flags it used up
            result[booking_id] = used_for[booking_id]
            continue
        found = by_client.get(ref.client_id) if ref is not None else None
        result[booking_id] = [f for f in found if applies(f, ref.id, ref.ends_at)] if found else []
    return result


def _use_up_completed(
    session: Session, refs: list[_Ref], by_client: dict[str, list[Flag]], now: datetime
) -> dict[str, list[Flag]]:
    """Use up the flags of the bookings the host reports ``completed`` (a host without a
    checkout step never calls :func:`visit_completed`); they leave ``by_client``.

    Returns the flags used up, by booking id. Earliest visit first, so the flags go to
    the first visit that took place after they were set.
    """
    completed = sorted(
        (r for r in refs if r.status == "completed" and by_client.get(r.client_id)),
        key=lambda r: (r.ends_at is None, r.ends_at or now),
    )
    used_for: dict[str, list[Flag]] = {}
    for ref in completed:
        candidates = [f for f in by_client[ref.client_id] if applies(f, ref.id, ref.ends_at)]
        if not candidates:
            continue
        used = set(_use_up(session, ref.id, ref.client_id, [f.id for f in candidates], now))
        used_for[ref.id] = [f for f in candidates if f.id in used]
        for flag in used_for[ref.id]:
            session.expire(flag)  # its row now says used
        by_client[ref.client_id] = [f for f in by_client[ref.client_id] if f.id not in used]
    if used_for:
        forget_cached_flags()
    return used_for


def _use_up(session: Session, booking_id: str, client_id: str, flag_ids: list[int], now: datetime) -> list[int]:
    """Mark these flags used by the booking (each only if still active), with an audit entry
    each; flushes. Returns the ids this call used up."""
    used: list[int] = []
    for flag_id in flag_ids:
        result = session.execute(
            update(Flag)
            .where(Flag.id == flag_id, Flag.status == "active")
            .values(status="used", used_at=now, used_booking_id=booking_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            used.append(flag_id)
            audit(
                session,
                "flag.used",
                actor=None,
                booking_id=booking_id,
                client_id=client_id,
                subject_type="flag",
                subject_id=flag_id,
            )
    return used


# -- the flag an incident sets -----------------------------------------------------------


def flag_for_incident(session: Session, incident: Incident, staff: Staff, now: datetime) -> Flag:
    """Add the flag an incident sets (``conduct`` or ``vip``) and its audit entry; no commit."""
    flag = Flag(
        client_id=incident.client_id,
        type="conduct" if incident.conduct else "vip",
        status="active",
        reason=compose_reason(session, incident),
        source="incident",
        incident_id=incident.id,
        booking_id=incident.booking_id,
        location=incident.location,
        set_by=staff.id,
        set_by_name=staff.name[:120],
        created_at=now,
        expires_at=now + timedelta(days=current_app.config[key("VIP_DAYS")]),
    )
    session.add(flag)
    session.flush()
    _audit_set(session, flag, staff)
    return flag


def _audit_set(session: Session, flag: Flag, staff: Staff | None) -> None:
    audit(
        session,
        "flag.set",
        actor=staff,
        booking_id=flag.booking_id,
        client_id=flag.client_id,
        subject_type="flag",
        subject_id=flag.id,
        data={"type": flag.type, "source": flag.source},
    )


# -- visits ------------------------------------------------------------------------------


def upsert_visit(session: Session, booking: Booking, *, completed_at: datetime | None = None) -> None:
    """Insert or update the booking's :class:`Visit` row (ids and times only); no commit.

    Also brings the next-visit columns of her visits and incidents up to date
    (:func:`~.visits.refresh_next_visits`), under the booking's and the clients' locks on
    PostgreSQL (:func:`~.visits.lock_for_write`).
    """
    explicit = completed_at is not None
    moved = [Change(*place[:3]) for place in lock_for_write(session, [(booking.id, booking.client_id)]).values()]
    values = visit_row(booking, utcnow(), completed_at=completed_at)
    changed = ("client_id", "location", "staff_id", "starts_at", "ends_at", "status")
    dialect = check_database(session.get_bind().dialect.name)
    insert = (sqlite_insert if dialect == "sqlite" else pg_insert)(Visit).values(**values)
    updates = {name: insert.excluded[name] for name in changed}
    if explicit or values["completed_at"] is not None:
        updates["completed_at"] = func.coalesce(Visit.__table__.c.completed_at, insert.excluded.completed_at)
    if not explicit:  # a later "booked" from the host must not undo a completion it reported
        column = Visit.__table__.c.status
        updates["status"] = case((column == "completed", column), else_=insert.excluded.status)
    session.execute(insert.on_conflict_do_update(index_elements=["booking_id"], set_=updates))
    written = Change(booking.client_id, booking.starts_at, booking.ends_at)
    refresh_next_visits(session, [written, *moved], booking_ids=[booking.id])


def booking_created(session: Session, booking: Booking) -> list[Flag]:
    """A new booking: remember the visit; return (and signal) the client's flags for it.

    Sends ``client_flagged`` (``cause="booking"``) for each flag, so a host can show it
    at once. Calling this is optional: flags also resolve on read.
    """
    upsert_visit(session, booking)
    session.flush()
    flags = flags_for_booking(session, booking)
    for flag in flags:
        signals.send_robust(signals.client_flagged, flag=flag, booking=booking, staff=None, cause="booking")
    return flags


def visit_completed(session: Session, booking: Booking, now: datetime | None = None) -> list[Flag]:
    """The visit took place: remember it; use up the client's flags that were for it.

    A flag set by an incident on this very booking waits for the next visit.
    Returns the flags this call used up; a second call for the same visit uses none.
    """
    now = now or utcnow()
    upsert_visit(session, booking, completed_at=now)
    candidates = [f.id for f in flags_for_booking(session, booking, now)]
    used = _use_up(session, booking.id, booking.client_id, candidates, now)
    session.flush()
    forget_cached_flags()
    if not used:
        return []
    return list(session.scalars(select(Flag).where(Flag.id.in_(used)).order_by(Flag.id)))


# -- staff actions -----------------------------------------------------------------------


def get_flag(session: Session, flag_id: Any, staff: Staff) -> Flag:
    """The flag if ``staff`` may see it, else 404.

    Staff of a location see their location's flags, and the active flags of clients
    they know (they follow her to every branch).
    """
    try:
        pk = int(flag_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such flag.")) from None
    flag = session.get(Flag, pk) if 0 < pk < 2**31 else None
    if flag is None or flag.status == "void":
        raise NotFound(_("No such flag."))
    if staff.location is not None and flag.location != staff.location:
        if not is_active(flag):
            raise NotFound(_("No such flag."))
        client_in_scope(session, flag.client_id, staff)
    return flag


def _send_flagged(flag: Flag, booking: Booking | None, staff: Staff | None) -> None:
    signals.send_robust(signals.client_flagged, flag=flag, booking=booking, staff=staff, cause="set")


def acknowledge_flag(
    session: Session, flag_id: Any, staff: Staff | None, note: Any = None, booking: Booking | None = None
) -> Flag:
    """Staff saw the flag (``"seen, compliment offered"``), on ``booking`` if given.

    409 unless the flag is active and not yet seen; 422 for a booking of another client.
    """
    _require(staff, "flag.acknowledge")
    flag = get_flag(session, flag_id, staff)
    note = _clean(note, "note", required=False)
    if booking is not None and (booking.client_id != flag.client_id or not staff.can_see(booking)):
        raise InvalidInput(_("That booking belongs to another client."), field="booking_id")
    now = utcnow()
    result = session.execute(
        update(Flag)
        .where(Flag.id == flag.id, _active_condition(now), Flag.acknowledged_at.is_(None))
        .values(
            acknowledged_at=now, acknowledged_by=staff.id, acknowledged_by_name=staff.name[:120], acknowledgement=note
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # nothing written: it changed since we looked
        session.refresh(flag)
        if flag.acknowledged_at is not None:
            raise FlagConflict(_("%(name)s has already marked this flag as seen.", name=flag.acknowledged_by_name))
        raise FlagConflict(_("This flag is no longer active."))
    audit(
        session,
        "flag.acknowledged",
        actor=staff,
        booking_id=booking.id if booking is not None else None,
        client_id=flag.client_id,
        subject_type="flag",
        subject_id=flag.id,
    )
    session.flush()
    forget_cached_flags()
    session.refresh(flag)
    return flag


def lift_flag(session: Session, flag_id: Any, staff: Staff | None, reason: Any = None) -> Flag:
    """A manager lifts a flag, with a reason. 409 unless it is active."""
    _require(staff, "flag.manage")
    flag = get_flag(session, flag_id, staff)
    reason = _clean(reason, "reason", required=True)
    now = utcnow()
    result = session.execute(
        update(Flag)
        .where(Flag.id == flag.id, _active_condition(now))
        .values(status="lifted", lifted_at=now, lifted_by=staff.id, lift_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # nothing written: it changed since we looked
        raise FlagConflict(_("This flag is no longer active."))
    audit(
        session,
        "flag.lifted",
        actor=staff,
        booking_id=flag.booking_id,
        client_id=flag.client_id,
        subject_type="flag",
        subject_id=flag.id,
    )
    session.flush()
    forget_cached_flags()
    session.refresh(flag)
    return flag


def set_flag(
    session: Session,
    client_id: Any,
    staff: Staff | None,
    *,
    type: Any = None,
    reason: Any = None,
    booking: Booking | None = None,
    days: Any = None,
) -> Flag:
    """A manager flags a client by hand (``vip`` or ``conduct``) with a reason.

    It shows on every booking of hers that ends after now, ``booking`` included (the one
    the manager was looking at, if any: it gives the flag its location). ``days``
    overrides ``RECOVERY_VIP_DAYS`` (1-365).
    """
    _require(staff, "flag.manage")
    if booking is not None and booking.client_id != client_id:
        raise InvalidInput(_("That booking belongs to another client."), field="booking_id")
    client_id = client_in_scope(session, client_id, staff, booking)
    if type not in FLAG_TYPES:
        raise InvalidInput(_("type must be one of %(types)s.", types=", ".join(FLAG_TYPES)), field="type")
    reason = _clean(reason, "reason", required=True)
    if days is None or days == "":
        days = current_app.config[key("VIP_DAYS")]
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise InvalidInput(_("days must be a whole number from 1 to 365."), field="days")
    now = utcnow()
    flag = Flag(
        client_id=client_id,
        type=type,
        status="active",
        reason=reason,
        source="manual",
        booking_id=booking.id if booking is not None else None,
        location=booking.location if booking is not None else staff.location,
        set_by=staff.id,
        set_by_name=staff.name[:120],
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(flag)
    session.flush()
    _audit_set(session, flag, staff)
    session.flush()
    forget_cached_flags()
    _send_flagged(flag, booking, staff)
    return flag


# -- as the API shows them ---------------------------------------------------------------


def flag_to_dict(flag: Flag, show_conduct: bool, now: datetime | None = None) -> dict[str, Any]:
    """The flag as the JSON API shows it; a conduct note only for ``conduct.view`` roles."""
    restricted = flag.type == "conduct" and not show_conduct
    return {
        "id": flag.id,
        "client_id": flag.client_id,
        "type": flag.type,
        "status": flag.status,
        "state": state_of(flag, now),
        "reason": shown_reason(flag, show_conduct),
        "restricted": restricted,
        "source": flag.source,
        "incident_id": flag.incident_id,
        "booking_id": flag.booking_id,
        "set_by": flag.set_by,
        "set_by_name": flag.set_by_name,
        "created_at": iso(flag.created_at),
        "expires_at": iso(flag.expires_at),
        "acknowledged_at": iso(flag.acknowledged_at),
        "acknowledged_by": flag.acknowledged_by,
        "acknowledged_by_name": flag.acknowledged_by_name,
        "acknowledgement": None if restricted else flag.acknowledgement,
        "used_at": iso(flag.used_at),
        "used_booking_id": flag.used_booking_id,
        "lifted_at": iso(flag.lifted_at),
        "lifted_by": flag.lifted_by,
        "lift_reason": None if restricted else flag.lift_reason,
    }


def can_read_conduct(staff: Staff) -> bool:
    """Whether ``staff``'s role may read conduct notes (``conduct.view``)."""
    return permitted(current_app.config, "conduct.view", staff.role)

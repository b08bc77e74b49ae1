"""The next visit: VIP and conduct flags, the visits the extension hears of, booking holds.

A flag is a note for the client's next visit: ``vip`` (extra attention after an incident)
or ``conduct`` (a warning after abuse of staff: manager on duty, never a VIP; it wins over
``vip`` on display). Recording an incident sets one; a manager may set or lift one by hand.
It shows on every later booking of the client until her next completed visit uses it up,
it expires (``RECOVERY_VIP_DAYS``) or a manager lifts it.

Which bookings a flag is for (:func:`applies`): every booking of the client that ends after
the flag was set, except the booking whose incident set it. Active flags follow the client to every
branch (a flag set at one desk must reach the desk she comes to next); the history of
used, lifted and expired flags stays within each branch.

A booking hold ("no online bookings, please call") is off unless a manager sets it;
:func:`may_book` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from babel.numbers import format_currency, get_currency_precision
from flask import current_app, g, has_app_context
from flask_babel import get_locale
from sqlalchemy import bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import signals
from ..config import key, permitted
from ..entities import Booking, Staff
from ..errors import Conflict, InvalidInput, NotFound
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import BookingHold, Compensation, Flag, Incident, Visit, check_database, utcnow
from ..vocabulary import category_label, severity_label
from .audit import audit
from .visits import Change, before_change, lock_clients, refresh_next_visits, visit_row

#: Flag types (stable keys): extra attention, and a warning that protects staff.
FLAG_TYPES = ("vip", "conduct")

#: How many ids go into one ``IN (...)`` list.
_CHUNK = 500

#: What to do for her next time, by incident category (a generic line for the others).
_ATTENTION = {
    "late": _l("Start on time; greet her by name and offer a compliment."),
    "result": _l("Book her with the best master and check the result together before she leaves."),
}
_ATTENTION_DEFAULT = _l("Greet her by name and offer a compliment.")

#: What a role without ``conduct.view`` reads on a conduct warning instead of the note.
CONDUCT_NOTICE = _l("Conduct warning: ask the manager on duty to be present. No VIP treatment.")


class FlagConflict(Conflict):
    """The flag or hold is not in a state that allows this (used, lifted, expired, seen)."""


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
            "set_at": _iso(self.set_at),
        }


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

    __slots__ = ("id", "client_id", "ends_at", "location")

    def __init__(self, id: str, client_id: str, ends_at: datetime | None, location: str | None = None) -> None:  # noqa: A002
        self.id = id
        self.client_id = client_id
        self.ends_at = ends_at
        self.location = location


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
    from ..extension import get_recovery

    refs: dict[str, _Ref] = {}
    wanted: list[str] = []
    ids: list[str] = []
    rows: list[_Ref] = []  # a host's own rows: the badge reads their location itself
    for item in bookings:
        if isinstance(item, Booking):
            refs[item.id] = _Ref(item.id, item.client_id, item.ends_at, item.location)
            wanted.append(item.id)
        elif hasattr(item, "client_id"):
            ref = _Ref(str(item.id), str(item.client_id), item.ends_at)
            rows.append(ref)
            wanted.append(ref.id)
        else:
            ids.append(str(item))
            wanted.append(str(item))
    missing = sorted(set(ids) - set(refs))
    for start in range(0, len(missing), _CHUNK):
        rows = session.execute(
            select(Visit.booking_id, Visit.client_id, Visit.ends_at, Visit.starts_at, Visit.location).where(
                Visit.booking_id.in_(missing[start : start + _CHUNK])
            )
        )
        for booking_id, client_id, ends_at, starts_at, location in rows:
            refs[booking_id] = _Ref(booking_id, client_id, ends_at or starts_at, location)
    for booking_id in missing:
        if booking_id not in refs:
            try:
                booking = get_recovery().load_booking(booking_id)
            except NotFound:
                continue
            refs[booking_id] = _Ref(booking.id, booking.client_id, booking.ends_at, booking.location)
    now = utcnow()
    clients = {ref.client_id for ref in refs.values()} | {ref.client_id for ref in rows}
    by_client = active_flags_for_clients(session, clients, now)
    cache = _cache()
    if cache is not None:
        cache.remember(by_client, refs.values())
    for ref in rows:
        refs.setdefault(ref.id, ref)
    result: dict[str, list[Flag]] = {}
    for booking_id in wanted:
        ref = refs.get(booking_id)
        found = by_client.get(ref.client_id) if ref is not None else None
        result[booking_id] = [f for f in found if applies(f, ref.id, ref.ends_at)] if found else []
    return result


# -- the per-request cache the badge uses ------------------------------------------------


class BadgeFlag(NamedTuple):
    """A flag as the badge needs it (a plain copy: no lazy loads after a commit)."""

    id: int
    client_id: str
    type: str
    reason: str | None
    source: str
    booking_id: str | None
    created_at: datetime


class BadgeCache:
    """Active flags by client for one request (``flask.g``).

    Filled by :func:`flags_for_bookings` for its clients, or, at the first badge of a
    client it does not know, with every active flag at once (one query: active flags are
    few, since the next visit uses them up and ``RECOVERY_VIP_DAYS`` ends them).
    """

    __slots__ = ("by_client", "refs", "complete", "viewer", "_by_int")

    def __init__(self) -> None:
        self.by_client: dict[str, tuple[BadgeFlag, ...]] = {}
        self.refs: dict[str, _Ref] = {}
        self.complete = False
        self.viewer: Any = None  # the badge helper's per-request view of the staff member
        self._by_int: dict[Any, tuple[BadgeFlag, ...]] | None = None

    def remember(self, by_client: dict[str, list[Flag]], refs: Iterable[_Ref]) -> None:
        for client_id, flags in by_client.items():
            self.by_client[client_id] = tuple(_copy(f) for f in flags)
        self._by_int = None
        for ref in refs:
            self.refs[ref.id] = ref

    def flags_of(self, session: Session, client_id: str) -> tuple[BadgeFlag, ...]:
        found = self.by_client.get(client_id)
        if found is not None:
            return found
        if not self.complete:
            self.load_all(session)
            found = self.by_client.get(client_id)
        return found or ()

    def lookup(self, client_ids: list[Any]) -> dict[Any, tuple[BadgeFlag, ...]]:
        """Flags by client id as ``client_ids`` hold them, so a list of the host's rows needs
        no ``str()`` per row: string ids as they are; a host's integer ids through the
        clients whose id is exactly ``str()`` of an integer; anything else by its ``str()``."""
        kinds = set(map(type, client_ids))
        kinds.discard(type(None))  # bare booking ids: nothing to look up
        if kinds <= {str}:
            return self.by_client
        if kinds <= {str, int}:
            if self._by_int is None:
                self._by_int = dict(self.by_client)
                for client_id, flags in self.by_client.items():
                    try:
                        number = int(client_id)
                    except ValueError:
                        continue
                    if str(number) == client_id:  # what str(number) would find, no more
                        self._by_int[number] = flags
            return self._by_int
        by_client = self.by_client
        return {c: by_client.get(str(c), ()) for c in client_ids if c is not None}

    def load_all(self, session: Session) -> None:
        """Load every active flag (one query); clients already known keep theirs.

        A Core query on the session's own connection (same transaction, so it sees what the
        session wrote): a day list pays for the query, not for the ORM around it.
        """
        if session.autoflush:
            session.flush()  # as session.execute would: a flag added but not flushed counts
        rows = session.connection(bind_arguments={"mapper": Flag}).execute(_ALL_ACTIVE, {"now": utcnow()})
        loaded: dict[str, list[BadgeFlag]] = {}
        for flag in map(BadgeFlag._make, rows):
            loaded.setdefault(flag.client_id, []).append(flag)
        for client_id, flags in loaded.items():
            self.by_client.setdefault(client_id, tuple(flags))
        self.complete = True
        self._by_int = None


_FLAGS = Flag.__table__.c  # Core columns: no ORM layer around the query
#: Every active flag, as the badge needs it (built once: a page pays only for the query).
_ALL_ACTIVE = (
    select(_FLAGS.id, _FLAGS.client_id, _FLAGS.type, _FLAGS.reason, _FLAGS.source, _FLAGS.booking_id, _FLAGS.created_at)
    .where(_FLAGS.status == "active", or_(_FLAGS.expires_at.is_(None), _FLAGS.expires_at > bindparam("now")))
    .order_by(_FLAGS.created_at, _FLAGS.id)
)


def _copy(flag: Flag) -> BadgeFlag:
    return BadgeFlag(flag.id, flag.client_id, flag.type, flag.reason, flag.source, flag.booking_id, flag.created_at)


def _cache() -> BadgeCache | None:
    if not has_app_context():
        return None
    cache = g.get("_recovery_badges")
    if cache is None:
        cache = g._recovery_badges = BadgeCache()
    return cache


def badge_cache() -> BadgeCache:
    """This request's :class:`BadgeCache` (created at first use)."""
    return _cache()


def forget_cached_flags() -> None:
    """Drop this request's cache (after a flag changed)."""
    if has_app_context():
        g.pop("_recovery_badges", None)


# -- the reason a colleague reads ----------------------------------------------------------


def _money(amount: int) -> str:
    currency = current_app.config[key("CURRENCY")]
    locale = str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])
    return format_currency(Decimal(amount).scaleb(-get_currency_precision(currency)), currency, locale=locale)


def _remedy(compensation: Compensation) -> str:
    kind = compensation.kind
    if kind == "gift":
        return _("a compliment worth %(amount)s", amount=_money(compensation.amount))
    if kind == "discount":
        return _("%(amount)s off the next visit", amount=_money(compensation.amount))
    if kind == "percent_discount":
        return _("%(percent)s%% off the next visit", percent=compensation.percent)
    if kind == "redo":
        return _("a free redo")
    return _("%(amount)s refunded", amount=_money(compensation.amount))


def _snippet(text: str | None, limit: int = 120) -> str:
    line = " ".join((text or "").split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line.rstrip(" .;:")


def compose_reason(session: Session, incident: Incident) -> str:
    """The note for her next visit, in the current language, from the incident and remedies.

    ``Last visit: Late start (major): master started 25 minutes late. Given: 15% off the
    next visit. Start on time; greet her by name and offer a compliment.`` A conduct
    incident gives a warning without the conduct note itself.
    """
    severity = severity_label(incident.severity).lower()
    if incident.conduct:
        return _(
            "Conduct warning: abuse of staff on her last visit (%(severity)s). Ask the manager on duty to be "
            "present. No VIP treatment.",
            severity=severity,
        )
    what = _("Last visit: %(category)s (%(severity)s)", category=category_label(incident.category), severity=severity)
    snippet = _snippet(incident.description)
    parts = [f"{what}: {snippet}." if snippet else f"{what}."]
    granted = session.scalars(
        select(Compensation)
        .where(Compensation.incident_id == incident.id, Compensation.status == "granted")
        .order_by(Compensation.id)
    ).all()
    if granted:
        parts.append(_("Given: %(remedies)s.", remedies="; ".join(_remedy(c) for c in granted)))
    parts.append(str(_ATTENTION.get(incident.category, _ATTENTION_DEFAULT)))
    return " ".join(parts)


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


def refresh_reason(session: Session, incident_id: int) -> int:
    """Recompose the reason of the incident's active flags (after a remedy was granted).

    Returns how many flags changed. Reads first and commits, then writes in a short
    transaction of its own (SQLite never has to upgrade a read lock).
    """
    incident = session.get(Incident, incident_id)
    if incident is None or incident.conduct:
        return 0
    reason = compose_reason(session, incident)
    session.commit()
    result = session.execute(
        update(Flag)
        .where(Flag.incident_id == incident_id, Flag.source == "incident", Flag.status == "active")
        .values(reason=reason)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    forget_cached_flags()
    return result.rowcount


def _on_compensation_granted(sender: Any, compensation: Compensation | None = None, **extra: Any) -> None:
    """Receiver of ``compensation_granted``: the remedy joins the flag's reason."""
    from ..extension import get_recovery

    session = get_recovery().session
    try:
        refresh_reason(session, compensation.incident_id)
    except Exception:
        session.rollback()
        raise


signals.compensation_granted.connect(_on_compensation_granted)


# -- visits ------------------------------------------------------------------------------


def upsert_visit(session: Session, booking: Booking, *, completed_at: datetime | None = None) -> None:
    """Insert or update the booking's :class:`Visit` row (ids and times only); no commit.

    Also brings the next-visit columns of her visits and incidents up to date
    (:func:`~.visits.refresh_next_visits`), under the client's lock on PostgreSQL.
    """
    explicit = completed_at is not None
    lock_clients(session, [booking.client_id])
    moved = before_change(session, [booking.id])
    lock_clients(session, [change.client_id for change in moved])
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
    session.commit()
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
    used: list[int] = []
    for flag_id in candidates:
        result = session.execute(
            update(Flag)
            .where(Flag.id == flag_id, Flag.status == "active")
            .values(status="used", used_at=now, used_booking_id=booking.id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            used.append(flag_id)
            audit(
                session,
                "flag.used",
                actor=None,
                booking_id=booking.id,
                client_id=booking.client_id,
                subject_type="flag",
                subject_id=flag_id,
            )
    session.commit()
    forget_cached_flags()
    if not used:
        return []
    return list(session.scalars(select(Flag).where(Flag.id.in_(used)).order_by(Flag.id)))


# -- staff actions -----------------------------------------------------------------------


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


def _require(staff: Staff | None, action: str) -> Staff:
    from .incidents import require_permission

    return require_permission(staff, action)


def _clean(value: Any, field: str, *, required: bool) -> str | None:
    from .incidents import clean_text

    return clean_text(value, field, required=required)


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
    if result.rowcount != 1:
        session.rollback()
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
    session.commit()
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
    if result.rowcount != 1:
        session.rollback()
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
    session.commit()
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
    session.commit()
    forget_cached_flags()
    _send_flagged(flag, booking, staff)
    return flag


# -- booking holds -----------------------------------------------------------------------


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
    session.commit()
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
    if result.rowcount != 1:
        session.rollback()
        raise FlagConflict(_("Online booking is not paused for this client."))
    audit(session, "hold.lifted", actor=staff, client_id=client_id, subject_type="hold", subject_id=hold.id)
    session.commit()
    session.refresh(hold)
    return hold


# -- as the API shows them ---------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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
        "created_at": _iso(flag.created_at),
        "expires_at": _iso(flag.expires_at),
        "acknowledged_at": _iso(flag.acknowledged_at),
        "acknowledged_by": flag.acknowledged_by,
        "acknowledged_by_name": flag.acknowledged_by_name,
        "acknowledgement": None if restricted else flag.acknowledgement,
        "used_at": _iso(flag.used_at),
        "used_booking_id": flag.used_booking_id,
        "lifted_at": _iso(flag.lifted_at),
        "lifted_by": flag.lifted_by,
        "lift_reason": None if restricted else flag.lift_reason,
    }


def hold_to_dict(hold: BookingHold) -> dict[str, Any]:
    """The booking hold as the JSON API shows it."""
    return {
        "id": hold.id,
        "client_id": hold.client_id,
        "active": hold.active,
        "reason": hold.reason,
        "incident_id": hold.incident_id,
        "set_by": hold.set_by,
        "set_at": _iso(hold.set_at),
        "lifted_by": hold.lifted_by,
        "lifted_at": _iso(hold.lifted_at),
        "lift_reason": hold.lift_reason,
    }


def can_read_conduct(staff: Staff) -> bool:
    """Whether ``staff``'s role may read conduct notes (``conduct.view``)."""
    return permitted(current_app.config, "conduct.view", staff.role)

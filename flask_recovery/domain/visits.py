"""The host's visits in ``recovery_visits``: copied from the ``bookings_between`` loader.

Each visit row, and each incident, also carries the start of the client's *next* visit
(``next_visit_at``, and ``next_visit_here_at`` at the same location): the first visit of
hers, of any status but ``cancelled``, that starts when this one has ended or later.
The journal's return rate then reads one column per client instead of joining all her
later visits (:func:`refresh_next_visits` keeps the columns true; every write of a visit
goes through it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..entities import Booking
from ..models import Incident, Visit, check_database, utcnow

#: PostgreSQL advisory-lock namespaces (first key of the pair): bookings, then clients.
BOOKING_LOCKS = 0x52_56_42_4B  # "RVBK"
CLIENT_LOCKS = 0x52_56_49_53  # "RVIS"
#: Bookings and clients are each spread over this many locks (at most this many held).
LOCK_BUCKETS = 64
#: Client ids per ``IN (...)`` list.
_CHUNK = 500


def visit_row(booking: Booking, now: datetime, *, completed_at: datetime | None = None) -> dict[str, Any]:
    """The ``recovery_visits`` row of a booking: ids and times only, never a name.

    ``completed_at`` marks the visit completed at that moment; without it, a booking the
    host reports as completed counts as completed at its end.
    """
    if completed_at is None and booking.status == "completed":
        completed_at = booking.ends_at
    return {
        "booking_id": booking.id,
        "client_id": booking.client_id,
        "location": booking.location,
        "staff_id": booking.staff_id,
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "status": "completed" if completed_at is not None else booking.status,
        "created_at": now,
        "completed_at": completed_at,
    }


def sync_visits(
    session: Session,
    loader: Callable[[datetime, datetime], Iterable[Booking]],
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(days=7),
    batch: int = 1000,
) -> int:
    """Copy the host's bookings in ``[start, end)`` into ``recovery_visits`` (ids and times only).

    Calls ``loader`` one week at a time and upserts in batches (``INSERT ... ON CONFLICT
    DO UPDATE``), so it is a few statements per thousand bookings, never one per page
    view. The host's status wins; a ``completed_at`` already recorded by
    ``visit_completed`` is kept. Returns the number of bookings seen. Run it from cron
    (``flask recovery stats --sync-visits``) when the host does not call
    ``booking_created`` / ``visit_completed``. Works in the caller's transaction: the
    host's (its commit keeps the copy) or the CLI command's, which commits at the end.
    """
    dialect = check_database(session.get_bind().dialect.name)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    seen = 0
    cursor = start
    while cursor < end:
        window_end = min(cursor + step, end)
        rows: list[dict[str, Any]] = []
        for booking in loader(cursor, window_end):
            if not isinstance(booking, Booking):
                raise TypeError(f"bookings_between must yield flask_recovery.Booking, not {type(booking)!r}")
            rows.append(visit_row(booking, now))
        seen += len(rows)
        for offset in range(0, len(rows), batch):
            chunk = rows[offset : offset + batch]
            before = lock_for_write(session, [(row["booking_id"], row["client_id"]) for row in chunk])
            # Only a visit that moved, changed status or came new changes anyone's next visit.
            changed = [row for row in chunk if before.get(row["booking_id"]) != _place(row)]
            changes = [Change(row["client_id"], row["starts_at"], row["ends_at"]) for row in changed]
            changes += [Change(*before[row["booking_id"]][:3]) for row in changed if row["booking_id"] in before]
            stmt = insert(Visit).values(chunk)
            stmt = stmt.on_conflict_do_update(
                index_elements=[Visit.booking_id],
                set_={
                    "client_id": stmt.excluded.client_id,
                    "location": stmt.excluded.location,
                    "staff_id": stmt.excluded.staff_id,
                    "starts_at": stmt.excluded.starts_at,
                    "ends_at": stmt.excluded.ends_at,
                    "status": stmt.excluded.status,
                    "completed_at": func.coalesce(Visit.completed_at, stmt.excluded.completed_at),
                },
            )
            session.execute(stmt)
            refresh_next_visits(session, changes, booking_ids=[row["booking_id"] for row in changed])
        cursor = window_end
    return seen


def lock_for_write(session: Session, writes: list[tuple[str, str]]) -> dict[str, tuple]:
    """Lock what writing these ``(booking_id, client_id)`` visits touches; their places now.

    Two transactions writing visits of one client at once would each recompute her
    next-visit columns without seeing the other's row. On PostgreSQL, transaction-scoped
    advisory locks serialise them: first the bookings (so nobody moves one of them while
    its place is read), then every client involved, old and new, in one go. Each kind is
    taken in ascending order and bookings always before clients, so two writers never wait
    for each other in a circle. On SQLite the write transaction (one writer at a time) is
    begun before the places are read. Returns
    :func:`_places` of the bookings (before the write).
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        _lock(session, BOOKING_LOCKS, [booking_id for booking_id, _ in writes])
    else:
        connection = session.connection()
        if not connection.connection.driver_connection.in_transaction:
            # Read the places inside the write transaction: the driver would begin it only
            # at the first write, after the read, and another writer could come between.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    places = _places(session, [booking_id for booking_id, _ in writes])
    if postgres:
        clients = {client for _, client in writes} | {place[0] for place in places.values()}
        _lock(session, CLIENT_LOCKS, clients)
    return places


def _lock(session: Session, namespace: int, keys: Iterable[str]) -> None:
    buckets = sorted({zlib.crc32(key.encode()) % LOCK_BUCKETS for key in keys})
    if buckets:  # one statement; unnest keeps the array's (ascending) order
        session.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, bucket) FROM unnest(CAST(:buckets AS integer[])) AS bucket"),
            {"namespace": namespace, "buckets": buckets},
        )


class Change(NamedTuple):
    """A visit's place before or after a write: whose, when it starts and ends."""

    client_id: str
    starts_at: datetime | None
    ends_at: datetime | None


_PLACE = ("client_id", "starts_at", "ends_at", "status", "location")


def _place(row: dict[str, Any]) -> tuple:
    """What of a visit row decides the next and previous visits: whose, when, status, where."""
    return tuple(row[name] for name in _PLACE)


def _places(session: Session, booking_ids: list[str]) -> dict[str, tuple]:
    """:func:`_place` of these bookings' rows as they are now, by booking id."""
    places: dict[str, tuple] = {}
    columns = [getattr(Visit, name) for name in _PLACE]
    for offset in range(0, len(booking_ids), _CHUNK):
        ids = booking_ids[offset : offset + _CHUNK]
        for booking_id, *place in session.execute(select(Visit.booking_id, *columns).where(Visit.booking_id.in_(ids))):
            places[booking_id] = tuple(place)
    return places


def refresh_next_visits(
    session: Session,
    changes: Iterable[Change] | None = None,
    *,
    booking_ids: Iterable[str] = (),
) -> None:
    """Recompute the next-visit and previous-visit columns where a write may have changed them.

    ``changes``: the place of every visit written, before and after the write;
    ``booking_ids``: the visits written (their own rows, and their incidents, are
    recomputed). A row's next visit can only change if it ends before a changed start
    and its next visit is not already earlier than that start; a visit's previous
    completed visit only if it ends after a changed end and its previous one does not
    already end later. Only those rows are touched. ``changes=None`` recomputes every
    row (after a bulk load; the 0005 migration does the same). No commit; on PostgreSQL
    call :func:`lock_for_write` first.
    """
    if changes is None:
        session.execute(update(Visit).values(_visit_values()))
        session.execute(update(Incident).values(_next_values(Incident, Incident.visit_ended_at)))
        return
    changes = list(changes)
    starts = [c.starts_at for c in changes if c.starts_at is not None]
    ends = [c.ends_at for c in changes if c.ends_at is not None]
    if not starts:
        return
    low, high = min(starts), max(starts)
    clients = sorted({c.client_id for c in changes})
    written = list(booking_ids)
    for offset in range(0, len(clients), _CHUNK):
        some = clients[offset : offset + _CHUNK]
        for model, ended in ((Visit, Visit.ends_at), (Incident, Incident.visit_ended_at)):
            stale = and_(
                ended <= high,
                or_(
                    model.next_visit_at.is_(None),
                    model.next_visit_at >= low,
                    model.next_visit_here_at.is_(None),
                    model.next_visit_here_at >= low,
                ),
            )
            if model is Visit and ends:
                stale = or_(
                    stale,
                    and_(
                        Visit.ends_at >= min(ends),
                        or_(
                            Visit.previous_end_at.is_(None),
                            Visit.previous_end_at <= max(ends),
                            Visit.previous_here_end_at.is_(None),
                            Visit.previous_here_end_at <= max(ends),
                        ),
                    ),
                )
            if written:  # the rows of the visits written themselves (a new incident's too)
                stale = or_(stale, model.booking_id.in_(written))
            values = _visit_values() if model is Visit else _next_values(model, ended)
            stmt = update(model).where(model.client_id.in_(some), stale).values(values)
            session.execute(stmt.execution_options(synchronize_session=False))


def _next_values(model, ended) -> dict[str, Any]:
    """SET clauses: the first start of the client's visits (not cancelled) from ``ended`` on."""
    later = Visit.__table__.alias("later")

    def first_start(here: bool):
        stmt = select(func.min(later.c.starts_at)).where(
            later.c.client_id == model.client_id,
            later.c.status != "cancelled",
            later.c.starts_at >= ended,
        )
        if here:
            stmt = stmt.where(later.c.location == model.location)
        return stmt.scalar_subquery()

    return {"next_visit_at": first_start(False), "next_visit_here_at": first_start(True)}


def _visit_values() -> dict[str, Any]:
    """SET clauses of a visit: its next visits, and the end of the completed visit before it.

    "Before" orders the client's completed visits by end, then booking id, so that of
    two visits ending at the same moment exactly one comes first.
    """
    earlier = Visit.__table__.alias("earlier")

    def previous_end(here: bool):
        stmt = select(func.max(earlier.c.ends_at)).where(
            earlier.c.client_id == Visit.client_id,
            earlier.c.status == "completed",
            or_(
                earlier.c.ends_at < Visit.ends_at,
                and_(earlier.c.ends_at == Visit.ends_at, earlier.c.booking_id < Visit.booking_id),
            ),
        )
        if here:
            stmt = stmt.where(earlier.c.location == Visit.location)
        return stmt.scalar_subquery()

    values = _next_values(Visit, Visit.ends_at)
    values.update(previous_end_at=previous_end(False), previous_here_end_at=previous_end(True))
    return values

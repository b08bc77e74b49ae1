"""The host's visits in ``recovery_visits``: copied from the ``bookings_between`` loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..entities import Booking
from ..models import Visit, check_database, utcnow


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
    ``booking_created`` / ``visit_completed``.
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
            stmt = insert(Visit).values(rows[offset : offset + batch])
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
        session.commit()
        cursor = window_end
    return seen

"""Where the salon plugs into flask-recovery: the booking, staff and range loaders."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from flask_recovery import Booking, Recovery, Staff

from .models import SalonBooking, db
from .staff import current_staff

recovery = Recovery()

_MAX_ID = 2**31 - 1


def to_booking(row: SalonBooking) -> Booking:
    """The extension's view of one of our bookings.

    The service name is in the client's language, since the extension uses it in the
    follow-up mail it writes to that client.
    """
    client = row.client
    return Booking(
        id=str(row.id),
        client_id=str(row.client_id),
        client_name=client.name,
        client_email=client.email,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        staff_id=str(row.master_id),
        service=row.service.name(client.locale),
        price=row.price,
        status=row.status,
        location=row.location,
        locale=client.locale,
    )


def get_booking_row(booking_id: object) -> SalonBooking | None:
    """Our booking by id (``"8"`` or ``8``), or ``None`` for anything that is not one."""
    text = str(booking_id)
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    if not 0 < number <= _MAX_ID:
        return None
    return db.session.get(SalonBooking, number)


@recovery.booking_loader
def load_booking(booking_id: str) -> Booking | None:
    row = get_booking_row(booking_id)
    return to_booking(row) if row is not None else None


@recovery.staff_loader
def load_staff() -> Staff | None:
    return current_staff()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@recovery.bookings_between
def bookings_between(start: datetime, end: datetime) -> Iterable[Booking]:
    """Bookings that start in ``[start, end)`` (the extension picks the finished ones)."""
    rows = db.session.scalars(
        db.select(SalonBooking)
        .where(SalonBooking.starts_at >= _aware(start), SalonBooking.starts_at < _aware(end))
        .order_by(SalonBooking.starts_at, SalonBooking.id)
    ).unique()
    return [to_booking(row) for row in rows]

"""What crosses the border between the host and the extension: plain frozen dataclasses.

The host keeps its own models; it hands the extension a :class:`Booking` from its
``booking_loader`` and a :class:`Staff` from its ``staff_loader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: The booking statuses the extension understands.
BOOKING_STATUSES = ("booked", "completed", "cancelled", "no_show")


@dataclass(frozen=True)
class Booking:
    """A host's booking, as the extension sees it.

    Datetimes must be timezone-aware; ``price`` is in minor units (cents, kopecks).
    """

    id: str
    client_id: str
    client_name: str
    client_email: str | None
    starts_at: datetime
    ends_at: datetime
    staff_id: str | None
    service: str
    price: int | None = None
    status: str = "booked"
    location: str | None = None
    locale: str | None = None

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"Booking.{name} must be a timezone-aware datetime, got {value!r}")
        if self.status not in BOOKING_STATUSES:
            raise ValueError(f"Booking.status must be one of {BOOKING_STATUSES}, got {self.status!r}")
        if self.price is not None and (not isinstance(self.price, int) or isinstance(self.price, bool)):
            raise ValueError(f"Booking.price must be an integer in minor units or None, got {self.price!r}")
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "client_id", str(self.client_id))
        if self.staff_id is not None:
            object.__setattr__(self, "staff_id", str(self.staff_id))


@dataclass(frozen=True)
class Staff:
    """The staff member logged in at the desk.

    ``role`` is the host's role name (``master``, ``admin``, ``manager``, ...). A staff
    member with a ``location`` sees only bookings of that location; ``None`` sees all.
    """

    id: str
    name: str
    role: str
    email: str | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))

    def can_see(self, booking: Booking) -> bool:
        """Whether this staff member may see ``booking`` (location scoping)."""
        return self.location is None or booking.location == self.location

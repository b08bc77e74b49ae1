"""What crosses the border between the host and the extension: plain frozen dataclasses.

The host keeps its own models; it hands the extension a :class:`Booking` from its
``booking_loader`` (or ``bookings_loader`` / ``bookings_between``) and a :class:`Staff`
from its ``staff_loader``.

A ``Booking`` may carry naive datetimes (what most small sites store): it is built outside
any app, so it cannot know the salon's time zone. The extension reads every booking a
loader returns through :func:`normalize_booking`, which makes its times aware per
``RECOVERY_NAIVE_DATETIMES``. This module is a leaf (Flask, config, errors, i18n only), so
the rules in ``domain/`` may call it too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app

from .config import key
from .errors import RecoveryError
from .i18n import gettext as _

log = logging.getLogger("flask_recovery")

#: The booking statuses the extension understands.
BOOKING_STATUSES = ("booked", "completed", "cancelled", "no_show")


class NaiveDatetimeError(RecoveryError, ValueError):
    """A booking's time has no time zone and ``RECOVERY_NAIVE_DATETIMES`` is ``"error"``.

    ``field`` names it (``starts_at``, ``ends_at``). A :class:`~flask_recovery.RecoveryError`
    (so the widget shows it in its small error box and the API answers 422 with code
    ``naive_datetime``) and a ``ValueError`` (what a bad ``Booking`` always raised).
    """

    status = 422
    code = "naive_datetime"


def _optional_text(owner: str, name: str, value: object) -> str | None:
    """``None``, or ``value`` stripped (empty becomes ``None``); anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{name} must be a string or None, got {value!r}")
    return value.strip() or None


@dataclass(frozen=True)
class Booking:
    """A host's booking, as the extension sees it.

    ``price`` is in minor units (cents, kopecks). ``starts_at`` and ``ends_at`` should be
    timezone-aware; a naive one is accepted here and read per ``RECOVERY_NAIVE_DATETIMES``
    when the extension loads the booking (default: local time in ``RECOVERY_TIMEZONE``).
    ``client_phone`` is the client's phone as the host stores it (the call list and staff
    alerts show it), stripped; an empty one is ``None``.
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
    client_phone: str | None = None

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise ValueError(f"Booking.{name} must be a datetime, got {value!r}")
        if self.status not in BOOKING_STATUSES:
            raise ValueError(f"Booking.status must be one of {BOOKING_STATUSES}, got {self.status!r}")
        if self.price is not None and (not isinstance(self.price, int) or isinstance(self.price, bool)):
            raise ValueError(f"Booking.price must be an integer in minor units or None, got {self.price!r}")
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "client_id", str(self.client_id))
        if self.staff_id is not None:
            object.__setattr__(self, "staff_id", str(self.staff_id))
        object.__setattr__(self, "client_phone", _optional_text("Booking", "client_phone", self.client_phone))


@dataclass(frozen=True)
class Staff:
    """The staff member logged in at the desk.

    ``role`` is the host's role name (``master``, ``admin``, ``manager``, ...). A staff
    member with a ``location`` sees only bookings of that location; ``None`` sees all.
    ``locale`` (e.g. ``"ru"``) is her language for the extension's pages and messages;
    ``None`` leaves it to the host's Flask-Babel selector, the request, then
    ``RECOVERY_DEFAULT_LOCALE``.
    """

    id: str
    name: str
    role: str
    email: str | None = None
    location: str | None = None
    locale: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "locale", _optional_text("Staff", "locale", self.locale))

    def can_see(self, booking: Booking) -> bool:
        """Whether this staff member may see ``booking`` (location scoping)."""
        return self.location is None or booking.location == self.location


# -- naive datetimes ------------------------------------------------------------------

_warn_lock = threading.Lock()


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


def normalize_datetime(value: datetime, field: str = "starts_at") -> datetime:
    """``value`` made timezone-aware per ``RECOVERY_NAIVE_DATETIMES`` (needs an app context).

    An aware datetime is returned unchanged. A naive one is read as:

    - ``"local"`` (default): a wall-clock time in ``RECOVERY_TIMEZONE`` (Django's rule),
      returned in UTC. An hour that occurs twice (the autumn change) is its first
      occurrence unless the host set ``fold=1``; a time that does not exist (the spring
      gap) moves forward by the gap, as PEP 495 reads it. A warning is logged once per app.
    - ``"utc"``: a UTC time.
    - ``"error"``: refused with :class:`NaiveDatetimeError` naming ``field``.
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    config = current_app.config
    mode = config.get(key("NAIVE_DATETIMES"), "local")
    if mode == "utc":
        return value.replace(tzinfo=UTC)
    if mode == "error":
        raise NaiveDatetimeError(
            _(
                "This booking cannot be shown: its %(field)s has no time zone "
                '(RECOVERY_NAIVE_DATETIMES is "error"). Please tell the site\'s developer.',
                field=field,
            ),
            field=field,
        )
    timezone = config[key("TIMEZONE")]
    _warn_once(timezone)
    return value.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def normalize_booking(booking: Booking) -> Booking:
    """``booking`` with aware times (:func:`normalize_datetime`); the same object when they
    are aware already, a copy (``dataclasses.replace``) otherwise. Needs an app context.

    Every booking the extension receives from the host goes through here:
    :meth:`Recovery.load_booking`, :meth:`Recovery.load_bookings`, the ``bookings_between``
    loader, and ``Booking`` objects a host passes in (badges, ``flags_for_bookings``).
    """
    starts_at, ends_at = booking.starts_at, booking.ends_at
    if _aware(starts_at) and _aware(ends_at):
        return booking
    return replace(
        booking,
        starts_at=normalize_datetime(starts_at, "starts_at"),
        ends_at=normalize_datetime(ends_at, "ends_at"),
    )


def _warn_once(timezone: str) -> None:
    """Log, once per app, that naive booking times are being read as local time."""
    state = current_app.extensions.get("recovery")
    if state is None or getattr(state, "naive_warned", False):
        return
    with _warn_lock:
        if state.naive_warned:
            return
        state.naive_warned = True
    log.warning(
        "flask-recovery: a booking from the host's loader has naive datetimes; they are read as "
        "local time in RECOVERY_TIMEZONE (%s). Return timezone-aware datetimes, or set "
        "RECOVERY_NAIVE_DATETIMES to 'utc' or 'error'. (Logged once per app.)",
        timezone,
    )

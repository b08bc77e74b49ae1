"""Display labels for the salon's stable keys (translated at render time)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATUS_LABELS = {
    "booked": _l("Booked"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
    "no_show": _l("No-show"),
}

SPECIALITIES = {
    "stylist": _l("Stylist"),
    "barber": _l("Barber"),
    "nails": _l("Nail artist"),
    "colourist": _l("Colourist"),
}

LOCATIONS = {"center": _l("Centre"), "north": _l("North branch")}

ROLE_LABELS = {"master": _l("master"), "admin": _l("admin"), "manager": _l("manager")}

LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}

"""The demo's stand-in for a login: a role switcher that keeps a staff key in the session.

A real salon would use Flask-Login or its own accounts; the extension only needs a
``Staff`` from ``@recovery.staff_loader``.
"""

from __future__ import annotations

from flask import has_request_context, session
from flask_babel import lazy_gettext as _l

from flask_recovery import Staff

from .labels import LOCATIONS, ROLE_LABELS

SESSION_KEY = "staff"

#: staff key (the role switcher's option value) -> who that is.
DEMO_STAFF: dict[str, Staff] = {
    # Ольга is also master no. 1 in the salon's own table, so her id is that master's id.
    "olga": Staff(id="1", name="Ольга Кузнецова", role="master", email="olga@salon.example.com"),
    "irina": Staff(id="a1", name="Ирина Белова", role="admin", email="irina@salon.example.com"),
    "marina": Staff(id="mg1", name="Марина Зайцева", role="manager", email="marina@salon.example.com"),
    "pavel": Staff(id="a2", name="Павел Громов", role="admin", email="pavel@salon.example.com", location="north"),
}


def staff_choices() -> list[tuple[str, str]]:
    """(value, label) pairs for the role switcher, labels in the current language."""
    return [
        ("", _l("Not logged in")),
        ("olga", _l("%(name)s (master)", name="Ольга")),
        ("irina", _l("%(name)s (admin)", name="Ирина")),
        ("marina", _l("%(name)s (manager)", name="Марина")),
        ("pavel", _l("%(name)s (admin, North branch)", name="Павел")),
    ]


def staff_label(staff: Staff) -> str:
    """``"Ирина Белова, admin"`` (``", North branch"`` for a branch's staff), translated."""
    label = f"{staff.name}, {ROLE_LABELS.get(staff.role, staff.role)}"
    if staff.location:
        label += f", {LOCATIONS.get(staff.location, staff.location)}"
    return label


def current_staff_key() -> str:
    """The role switcher's current value ("" when nobody is logged in)."""
    if not has_request_context():
        return ""
    key = session.get(SESSION_KEY, "")
    return key if key in DEMO_STAFF else ""


def current_staff() -> Staff | None:
    """The staff member logged in at the desk, or ``None`` (also outside a request)."""
    return DEMO_STAFF.get(current_staff_key())

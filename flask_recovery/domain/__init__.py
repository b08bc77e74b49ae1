"""The rules of service recovery: plain functions on a SQLAlchemy session.

Views, the JSON API, the CLI, Celery tasks and tests all call these, never each other.
Each function checks authority, validates its input (raising
:class:`~flask_recovery.errors.InvalidInput` naming the field), writes its audit entry
in the same transaction, commits, and only then sends its signal.
"""

from .audit import audit, history_for_booking
from .incidents import (
    booking_record,
    close_incident,
    get_incident,
    incidents_for_booking,
    record_incident,
    reopen_incident,
    require_permission,
    require_staff,
    resolve_incident,
)

__all__ = [
    "audit",
    "booking_record",
    "close_incident",
    "get_incident",
    "history_for_booking",
    "record_incident",
    "reopen_incident",
    "incidents_for_booking",
    "require_permission",
    "require_staff",
    "resolve_incident",
]

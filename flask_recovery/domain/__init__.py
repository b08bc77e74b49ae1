"""The rules of service recovery: plain functions on a SQLAlchemy session.

Views, the JSON API, the CLI, Celery tasks and tests all call these, never each other.
Each function checks authority, validates its input (raising
:class:`~flask_recovery.errors.InvalidInput` naming the field), writes its audit entry
in the same transaction and flushes, then sends its signal. None of them commits or
rolls back: the host's transaction, or the extension's own entry point
(:mod:`flask_recovery.unit`), decides.
"""

from .audit import audit, history_for_booking
from .compensations import (
    ConductCase,
    VoucherError,
    authority_summary,
    compensations_for_booking,
    decide_compensation,
    get_compensation,
    grant_compensation,
    month_of,
    month_spend,
    pending_requests,
    redeem_voucher,
    suggestions,
    value_of,
    value_warnings,
)
from .incidents import (
    booking_record,
    close_incident,
    get_incident,
    incidents_for_booking,
    parse_month,
    record_incident,
    reopen_incident,
    require_permission,
    require_staff,
    resolve_incident,
)

__all__ = [
    "ConductCase",
    "VoucherError",
    "authority_summary",
    "compensations_for_booking",
    "decide_compensation",
    "get_compensation",
    "grant_compensation",
    "month_of",
    "month_spend",
    "pending_requests",
    "redeem_voucher",
    "suggestions",
    "value_of",
    "value_warnings",
    "audit",
    "booking_record",
    "close_incident",
    "get_incident",
    "history_for_booking",
    "record_incident",
    "reopen_incident",
    "incidents_for_booking",
    "parse_month",
    "require_permission",
    "require_staff",
    "resolve_incident",
]

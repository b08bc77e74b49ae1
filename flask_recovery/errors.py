"""Typed errors raised by the rules; the HTTP layers map each to its status code.

Every error carries a stable machine ``code`` (what a host's code tests) beside a
``message`` a person reads, translated into her language (pretix's
``CheckInError(_("..."), "code")``): ``InvalidInput(_("Describe what happened."),
field="description", code="required")``. A message may be a lazy string; it is rendered
when the error is shown, in the locale in force then.
"""

from __future__ import annotations

from typing import Any

from .i18n import lazy_gettext as _l


class RecoveryError(Exception):
    """Base class: a user-facing refusal with a stable ``code`` and an HTTP ``status``.

    ``code`` defaults to the class's; a rule passes a more precise one where a client
    may want to tell situations apart (``refund_exceeds_price``, ``incident_closed``).
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: Any, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return str(self.message)

    def to_dict(self) -> dict:
        """The JSON error body: ``{"error": {"code", "message", "field"?}}``."""
        error = {"code": self.code, "message": str(self.message)}
        if self.field:
            error["field"] = self.field
        return {"error": error}


class NotAuthenticated(RecoveryError):
    """No staff member is logged in."""

    status = 401
    code = "not_authenticated"


class NotAllowed(RecoveryError):
    """The staff member's role may not do this."""

    status = 403
    code = "forbidden"


class NotFound(RecoveryError):
    """Unknown booking, incident or other id (or one outside the staff member's location)."""

    status = 404
    code = "not_found"


class InvalidInput(RecoveryError):
    """A field is missing or malformed; ``field`` names it."""

    status = 422
    code = "invalid"


class Conflict(RecoveryError):
    """The request does not fit the current state (resolving a resolved case, ...)."""

    status = 409
    code = "conflict"


# -- what a person reads when a field is missing or not one of the choices ---------------
# One table for the rules and the forms, so a page and the API say the same thing.

#: What to write when a field is left empty, by field name.
REQUIRED_MESSAGES = {
    "category": _l("Choose what went wrong."),
    "severity": _l("Choose how serious it was."),
    "description": _l("Describe what happened."),
    "kind": _l("Choose a remedy."),
    "amount": _l("Enter the amount."),
    "percent": _l("Enter the percent off the next visit."),
    "reason": _l("Give a reason: a colleague will read it."),
    "code": _l("Enter the voucher code."),
}
#: What to write when a value is not one of the choices, by field name.
CHOICE_MESSAGES = {
    "category": _l("Choose one of the situations in the list."),
    "severity": _l("Choose how serious it was."),
    "kind": _l("Choose a remedy from the list."),
    "type": _l("Choose extra attention or a conduct warning."),
}


def required(field: str) -> InvalidInput:
    """The error for an empty ``field`` (code ``required``)."""
    return InvalidInput(REQUIRED_MESSAGES.get(field, _l("Fill in this field.")), field=field, code="required")


def not_a_choice(field: str) -> InvalidInput:
    """The error for a value of ``field`` that is not one of its choices (code ``invalid_choice``)."""
    return InvalidInput(
        CHOICE_MESSAGES.get(field, _l("Choose one of the options.")), field=field, code="invalid_choice"
    )

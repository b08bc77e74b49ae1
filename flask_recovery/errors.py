"""Typed errors raised by the rules; the HTTP layers map each to its status code."""

from __future__ import annotations


class RecoveryError(Exception):
    """Base class: a user-facing refusal with a stable ``code`` and an HTTP ``status``."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        """The JSON error body: ``{"error": {"code", "message", "field"?}}``."""
        error = {"code": self.code, "message": self.message}
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

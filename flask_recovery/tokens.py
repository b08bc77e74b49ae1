"""Signed, expiring tokens for the links in a client's follow-up mail.

A token carries only the follow-up's id, signed with ``itsdangerous`` under a salt per
purpose, so an answer link can never serve as an unsubscribe link and the other way
round. Keys rotate the way Flask's session does: the token is signed with
``SECRET_KEY`` and accepted under any key of ``SECRET_KEY_FALLBACKS`` as well
(itsdangerous signs with the last key of the list and verifies with each).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from .config import key
from .errors import RecoveryError

#: The purposes a link may serve, and the salt that keeps them apart.
SALTS = {
    "answer": "flask-recovery.answer",
    "unsubscribe": "flask-recovery.unsubscribe",
}

#: The config key holding each purpose's lifetime.
MAX_AGE_KEYS = {
    "answer": "LINK_MAX_AGE",
    "unsubscribe": "UNSUBSCRIBE_LINK_MAX_AGE",
}


class InvalidLink(RecoveryError):
    """The link was tampered with, cut short, or made for another purpose (400)."""

    status = 400
    code = "link_invalid"


class ExpiredLink(InvalidLink):
    """The link is genuine but older than its lifetime (410)."""

    status = 410
    code = "link_expired"


class UsedLink(InvalidLink):
    """The link is genuine but used up: already answered, or voided (409)."""

    status = 409
    code = "link_used"


class AlreadyAnswered(UsedLink):
    """The link is genuine, but the visit already has the client's answer (409)."""

    code = "already_answered"


class AlreadyUnsubscribed(UsedLink):
    """The unsubscribe link is genuine, but the client is unsubscribed already: used up (409)."""

    code = "already_unsubscribed"


def serializer(purpose: str) -> URLSafeTimedSerializer:
    """The serializer for ``purpose`` (``"answer"`` or ``"unsubscribe"``) on the current app."""
    try:
        salt = SALTS[purpose]
    except KeyError:
        raise ValueError(f"unknown link purpose {purpose!r}; known: {sorted(SALTS)}") from None
    config = current_app.config
    secret = config.get("SECRET_KEY")
    if not secret:
        raise RuntimeError("flask-recovery signs the links in client mail with SECRET_KEY: set it.")
    keys = [*(config.get("SECRET_KEY_FALLBACKS") or []), secret]
    return URLSafeTimedSerializer(keys, salt=salt)


def max_age(purpose: str) -> timedelta:
    """How long a link of ``purpose`` stays valid (``RECOVERY_LINK_MAX_AGE`` and friends)."""
    return current_app.config[key(MAX_AGE_KEYS[purpose])]


def make_token(purpose: str, followup_id: int) -> str:
    """A URL-safe signed token for the follow-up ``followup_id``, valid for ``purpose`` only."""
    return serializer(purpose).dumps(int(followup_id))


def read_token(purpose: str, token: str) -> int:
    """The follow-up id inside ``token``.

    Raises :class:`ExpiredLink` for a genuine but outdated token and :class:`InvalidLink`
    for anything else that is not a genuine token of this ``purpose``.
    """
    if not isinstance(token, str) or not token or len(token) > 512:
        raise InvalidLink("This link is not complete.")
    seconds = int(max_age(purpose).total_seconds())
    try:
        value = serializer(purpose).loads(token, max_age=seconds)
    except SignatureExpired:
        raise ExpiredLink("This link has expired.") from None
    except BadData:
        raise InvalidLink("This link is not valid.") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**31:
        raise InvalidLink("This link is not valid.")
    return value

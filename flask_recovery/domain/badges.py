"""The per-request cache the badge uses: the active flags by client, kept on ``flask.g``.

:func:`~.flags.flags_for_bookings` fills it for the bookings of a list, the badge helper
(:mod:`flask_recovery.widgets`) reads it, and every change of a flag drops it
(:func:`forget_cached_flags`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from flask import g, has_app_context
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from ..models import Flag, utcnow

if TYPE_CHECKING:
    from .flags import _Ref


class BadgeFlag(NamedTuple):
    """A flag as the badge needs it (a plain copy: no lazy loads after a commit)."""

    id: int
    client_id: str
    type: str
    reason: str | None
    source: str
    booking_id: str | None
    created_at: datetime


class BadgeCache:
    """Active flags by client for one request (``flask.g``).

    Filled by :func:`flags_for_bookings` for its clients, or, at the first badge of a
    client it does not know, with every active flag at once (one query: active flags are
    few, since the next visit uses them up and ``RECOVERY_VIP_DAYS`` ends them).
    """

    __slots__ = ("by_client", "refs", "complete", "viewer", "_by_int")

    def __init__(self) -> None:
        self.by_client: dict[str, tuple[BadgeFlag, ...]] = {}
        self.refs: dict[str, _Ref] = {}
        self.complete = False
        self.viewer: Any = None  # the badge helper's per-request view of the staff member
        self._by_int: dict[Any, tuple[BadgeFlag, ...]] | None = None

    def remember(self, by_client: dict[str, list[Flag]], refs: Iterable[_Ref]) -> None:
        for client_id, flags in by_client.items():
            self.by_client[client_id] = tuple(_copy(f) for f in flags)
        self._by_int = None
        for ref in refs:
            self.refs[ref.id] = ref

    def flags_of(self, session: Session, client_id: str) -> tuple[BadgeFlag, ...]:
        found = self.by_client.get(client_id)
        if found is not None:
            return found
        if not self.complete:
            self.load_all(session)
            found = self.by_client.get(client_id)
        return found or ()

    def lookup(self, client_ids: list[Any]) -> dict[Any, tuple[BadgeFlag, ...]]:
        """Flags by client id as ``client_ids`` hold them, so a list of the host's rows needs
        no ``str()`` per row: string ids as they are; a host's integer ids through the
        clients whose id is exactly ``str()`` of an integer; anything else by its ``str()``."""
        kinds = set(map(type, client_ids))
        kinds.discard(type(None))  # bare booking ids: nothing to look up
        if kinds <= {str}:
            return self.by_client
        if kinds <= {str, int}:
            if self._by_int is None:
                self._by_int = dict(self.by_client)
                for client_id, flags in self.by_client.items():
                    try:
                        number = int(client_id)
                    except ValueError:
                        continue
                    if str(number) == client_id:  # what str(number) would find, no more
                        self._by_int[number] = flags
            return self._by_int
        by_client = self.by_client
        return {c: by_client.get(str(c), ()) for c in client_ids if c is not None}

    def load_all(self, session: Session) -> None:
        """Load every active flag (one query); clients already known keep theirs.

        A Core query on the session's own connection (same transaction, so it sees what the
        session wrote): a day list pays for the query, not for the ORM around it.
        """
        if session.autoflush:
            session.flush()  # as session.execute would: a flag added but not flushed counts
        rows = session.connection(bind_arguments={"mapper": Flag}).execute(_ALL_ACTIVE, {"now": utcnow()})
        loaded: dict[str, list[BadgeFlag]] = {}
        for flag in map(BadgeFlag._make, rows):
            loaded.setdefault(flag.client_id, []).append(flag)
        for client_id, flags in loaded.items():
            self.by_client.setdefault(client_id, tuple(flags))
        self.complete = True
        self._by_int = None


_FLAGS = Flag.__table__.c  # Core columns: no ORM layer around the query
#: Every active flag, as the badge needs it (built once: a page pays only for the query).
_ALL_ACTIVE = (
    select(_FLAGS.id, _FLAGS.client_id, _FLAGS.type, _FLAGS.reason, _FLAGS.source, _FLAGS.booking_id, _FLAGS.created_at)
    .where(_FLAGS.status == "active", or_(_FLAGS.expires_at.is_(None), _FLAGS.expires_at > bindparam("now")))
    .order_by(_FLAGS.created_at, _FLAGS.id)
)


def _copy(flag: Flag) -> BadgeFlag:
    return BadgeFlag(flag.id, flag.client_id, flag.type, flag.reason, flag.source, flag.booking_id, flag.created_at)


def _cache() -> BadgeCache | None:
    if not has_app_context():
        return None
    cache = g.get("_recovery_badges")
    if cache is None:
        cache = g._recovery_badges = BadgeCache()
    return cache


def badge_cache() -> BadgeCache:
    """This request's :class:`BadgeCache` (created at first use)."""
    return _cache()


def forget_cached_flags() -> None:
    """Drop this request's cache (after a flag changed)."""
    if has_app_context():
        g.pop("_recovery_badges", None)

"""Leases on outbox rows (follow-ups, staff mail): claim a batch, finish only one's own.

A model used here has ``status``, ``claimed_until`` and ``claim_token`` columns. A claim
is one short write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent
claimers skip each other's rows; ``BEGIN IMMEDIATE`` on SQLite, which serialises them);
a finish is a conditional UPDATE that only the holder of the lease can make.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .domain.compensations import _begin_write


def claim_rows(
    session: Session, model: Any, due: Any, order_by: tuple, limit: int, now: datetime, lease: timedelta
) -> tuple[str, list[int]]:
    """Lease up to ``limit`` rows matching ``due`` to a new token; returns ``(token, ids)``."""
    token = uuid.uuid4().hex
    _begin_write(session)
    stmt = select(model.id).where(due).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(status="sending", claimed_until=now + lease, claim_token=token)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return token, ids


def finish_row(session: Session, model: Any, row_id: int, token: str, **values: Any) -> bool:
    """Update a leased row only if this token still holds it; commit; True if it did."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, model.status == "sending", model.claim_token == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1

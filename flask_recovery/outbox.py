"""Leases on outbox rows (follow-ups, staff mail): claim a batch, finish only one's own.

A model used here has ``status``, ``claimed_until`` and ``claim_token`` columns. A claim
is one short write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent
claimers skip each other's rows; ``BEGIN IMMEDIATE`` on SQLite, which serialises them);
a finish is a conditional UPDATE that only the holder of the lease can make.

A sending run records each row's outcome through a :class:`Finisher`
(:func:`finisher_for`): every finish is its own committed transaction, committed before
the sender hands the server its next message. On SQLite, whose commit waits for the disk,
a writer thread commits it on a connection of its own while the sender writes the next
message (the driver lets go of the GIL while the database works); on PostgreSQL, whose
commit is a short round trip, the sender commits it itself on a connection of its own.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import AssertionPool, QueuePool, SingletonThreadPool, StaticPool

from .domain.db import write_transaction

log = logging.getLogger("flask_recovery")


def claim_rows(
    session: Session, model: Any, due: Any, order_by: tuple, limit: int, now: datetime, lease: timedelta
) -> tuple[str, list[int]]:
    """Lease up to ``limit`` rows matching ``due`` to a new token; returns ``(token, ids)``."""
    token = uuid.uuid4().hex
    session.commit()  # the dispatcher's own unit: what came before is settled first
    write_transaction(session)
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


def _finish_statement(model: Any, row_id: int, token: str, values: dict[str, Any]):
    return (
        update(model)
        .where(model.id == row_id, model.status == "sending", model.claim_token == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def finish_row(session: Session, model: Any, row_id: int, token: str, **values: Any) -> bool:
    """Update a leased row only if this token still holds it; commit; True if it did."""
    result = session.execute(_finish_statement(model, row_id, token, values))
    session.commit()
    return result.rowcount == 1


class FinishError(Exception):
    """A finish could not be written (the database failed); ``__cause__`` says why."""


class Finisher:
    """Writes a run's finishes (:func:`finish_row`'s conditional UPDATE), each in a transaction of its own.

    :meth:`finish` records one row's outcome; :meth:`wait` returns once every finish made
    so far is committed (and raises :class:`FinishError` if one failed); :meth:`results`
    waits and hands over ``(row_id, values, updated)`` for each. A sender that calls
    :meth:`wait` before it hands the next message to the server has each message's mark
    as durable as a synchronous commit makes it, however the subclass overlaps the
    commit with its own work. :func:`finisher_for` picks the subclass for an engine.

    This base class commits each finish at once on ``session``.
    """

    def __init__(self, session: Session, model: Any) -> None:
        self.model = model
        self.session = session
        self._done: list[tuple[int, dict[str, Any], bool]] = []
        self._statements: dict[tuple[str, ...], Any] = {}

    def finish(self, row_id: int, token: str, **values: Any) -> None:
        """Set ``values`` on ``row_id`` if ``token`` still holds its lease."""
        self._done.append((row_id, values, finish_row(self.session, self.model, row_id, token, **values)))

    def wait(self) -> None:
        """Return once every finish made so far is committed; :class:`FinishError` if one failed."""

    def results(self) -> list[tuple[int, dict[str, Any], bool]]:
        """Wait, then hand over ``(row_id, values, updated)`` of every finish since the last call."""
        self.wait()
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Release what the finisher holds (outcomes not asked for are written but not reported)."""

    def _statement(self, names: tuple[str, ...]):
        """The finish UPDATE setting the columns ``names``, built once (bound parameters only)."""
        statement = self._statements.get(names)
        if statement is None:
            table = self.model.__table__  # a Core statement: it runs on a Connection, not the ORM
            statement = self._statements[names] = (
                update(table)
                .where(
                    table.c.id == bindparam("row_id"),
                    table.c.status == "sending",
                    table.c.claim_token == bindparam("token", type_=table.c.claim_token.type),
                )
                .values({name: bindparam(f"v_{name}", type_=table.c[name].type) for name in names})
            )
        return statement

    @staticmethod
    def _params(row_id: int, token: str, values: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
        names = tuple(sorted(values))
        return names, {"row_id": row_id, "token": token, **{f"v_{name}": values[name] for name in names}}


class ConnectionFinisher(Finisher):
    """Commits each finish at once, in autocommit on a connection of its own (never the session's).

    For PostgreSQL, whose commit is a short round trip: the sending thread waits for it,
    which costs less CPU than handing it to a writer thread (what counts when several
    dispatchers share the machine: ``benchmarks/followups.py`` (ii)).
    """

    def __init__(self, session: Session, model: Any, engine: Engine) -> None:
        super().__init__(session, model)
        self._engine = engine
        self._connection: Connection | None = None

    def finish(self, row_id: int, token: str, **values: Any) -> None:
        names, params = self._params(row_id, token, values)
        try:
            if self._connection is None:
                self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            updated = self._connection.execute(self._statement(names), params).rowcount == 1
        except Exception as error:
            if self._connection is not None:
                self._connection.invalidate()  # in an unknown state: never reuse it
                self._connection = None
            raise FinishError(f"could not record the outcome of an outbox row: {error}") from error
        self._done.append((row_id, values, updated))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class ThreadedFinisher(Finisher):
    """Commits each finish on a thread and a connection of its own, in the order made.

    Each UPDATE runs in autocommit through SQLAlchemy: the driver lets go of the GIL while
    the database works (on SQLite, the step that writes and syncs the journal and the
    database; on PostgreSQL, the wait for the server's answer), so the commit goes on
    while the sending thread writes the next message.
    """

    def __init__(self, session: Session, model: Any, engine: Engine) -> None:
        super().__init__(session, model)
        self._engine = engine
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="recovery-outbox")
        self._connection: Connection | None = None  # the writer thread's own
        self._entered = threading.Event()
        self._queued: list[tuple[int, dict[str, Any], Future]] = []

    def finish(self, row_id: int, token: str, **values: Any) -> None:
        self._entered.clear()
        self._queued.append((row_id, values, self._executor.submit(self._write, row_id, token, values)))
        # Give the writer the GIL until its UPDATE is in the driver: otherwise it would wait
        # for it until this thread next blocks, and start its commit that much later.
        self._entered.wait(0.002)

    def _write(self, row_id: int, token: str, values: dict[str, Any]) -> bool:
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        names, params = self._params(row_id, token, values)
        statement = self._statement(names)
        self._entered.set()
        try:
            return self._connection.execute(statement, params).rowcount == 1
        except BaseException:
            self._connection.invalidate()  # in an unknown state: never reuse it
            self._connection = None
            raise

    def wait(self) -> None:
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        error: BaseException | None = None
        for row_id, values, future in queued:  # one writer, in order
            try:
                self._done.append((row_id, values, future.result()))
            except BaseException as failed:
                error = error or failed
        if error is not None:
            raise FinishError(f"could not record the outcome of an outbox row: {error}") from error

    def close(self) -> None:
        for _row_id, _values, future in self._queued:
            future.exception()  # let it end
        self._executor.submit(self._close_connection).result()
        self._executor.shutdown()

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def finisher_for(session: Session, model: Any) -> Finisher:
    """The fastest :class:`Finisher` the session's engine allows.

    PostgreSQL: :class:`ConnectionFinisher`. Other engines whose connections may move
    between threads (SQLite files, whose commit waits for the disk):
    :class:`ThreadedFinisher`. SQLite in memory (``StaticPool`` or ``SingletonThreadPool``,
    whose one connection stays in its thread), an ``AssertionPool`` or a ``QueuePool`` of
    one connection (the writer's would wait for the session's): :class:`Finisher`, on the
    session.
    """
    engine: Engine = session.get_bind(mapper=model)
    pool = engine.pool
    if isinstance(pool, SingletonThreadPool | StaticPool | AssertionPool):
        return Finisher(session, model)
    if isinstance(pool, QueuePool) and pool.size() < 2:
        return Finisher(session, model)  # no second connection to be sure of while the session holds one
    if engine.dialect.name == "postgresql":
        return ConnectionFinisher(session, model, engine)
    return ThreadedFinisher(session, model, engine)

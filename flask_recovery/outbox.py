"""Leases on outbox rows (follow-ups, staff mail): claim a batch, finish only one's own.

A model used here has ``status``, ``claimed_until`` and ``claim_token`` columns. A claim
is one short write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent
claimers skip each other's rows; ``BEGIN IMMEDIATE`` on SQLite, which serialises them);
a finish is a conditional UPDATE that only the holder of the lease can make.

A sending run records each row's outcome through a :class:`Finisher`
(:func:`finisher_for`): every finish is its own committed transaction, committed before
the sender hands the server its next message, while the commit itself overlaps the
sender's work (on PostgreSQL the server commits while we go on; elsewhere a writer thread
does, the driver letting go of the GIL).
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
from sqlalchemy.pool import QueuePool, SingletonThreadPool, StaticPool

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
        self._sql: dict[tuple[tuple[str, ...], str], tuple[str, list[str], dict[str, Any], list[Any]]] = {}

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
            table, model = self.model.__table__, self.model
            statement = self._statements[names] = (
                update(model)
                .where(
                    model.id == bindparam("row_id"),
                    model.status == "sending",
                    model.claim_token == bindparam("token", type_=table.c.claim_token.type),
                )
                .values({name: bindparam(f"v_{name}", type_=table.c[name].type) for name in names})
                .execution_options(synchronize_session=False)
            )
        return statement

    def _compiled(self, names: tuple[str, ...], dialect: Any) -> tuple[str, list[str], dict[str, Any], list[Any]]:
        """The finish UPDATE for ``names`` as the driver takes it: its SQL (positional
        parameters), the parameters' names in order, the values it binds itself, and each
        parameter's bind processor. Built once per set of columns."""
        key = (names, dialect.paramstyle)
        found = self._sql.get(key)
        if found is None:
            compiled = self._statement(names).compile(dialect=dialect)
            order = list(compiled.positiontup or [])
            # what the statement binds itself (the status it expects), not the per-row parameters
            constants = {
                name: compiled.binds[name].effective_value
                for name in order
                if name not in ("row_id", "token") and not name.startswith("v_")
            }
            processors = [compiled.binds[name].type.bind_processor(dialect) for name in order]
            found = self._sql[key] = (str(compiled), order, constants, processors)
        return found

    def _driver_args(self, names: tuple[str, ...], params: dict[str, Any], dialect: Any) -> tuple[str, list[Any]]:
        sql, order, constants, processors = self._compiled(names, dialect)
        params.update(constants)
        args = [
            process(params[name]) if process is not None else params[name]
            for name, process in zip(order, processors, strict=True)
        ]
        return sql, args

    @staticmethod
    def _params(row_id: int, token: str, values: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
        names = tuple(sorted(values))
        return names, {"row_id": row_id, "token": token, **{f"v_{name}": values[name] for name in names}}


class ThreadedFinisher(Finisher):
    """Commits each finish on a thread and a connection of its own, in the order made.

    Each UPDATE runs in autocommit: one call into the driver, which lets go of the GIL for
    all of it (on SQLite, the step that writes and syncs the journal and the database), so
    the commit goes on while the sending thread builds the next message and sends its
    envelope.
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
        try:
            if self._engine.dialect.positional:
                # straight to the driver: the least time holding the GIL before it lets go
                sql, args = self._driver_args(names, params, self._engine.dialect)
                cursor = self._connection.connection.driver_connection.cursor()
                self._entered.set()
                try:
                    cursor.execute(sql, args)
                    return cursor.rowcount == 1
                finally:
                    cursor.close()
            statement = self._statement(names)
            self._entered.set()
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


class PostgresFinisher(Finisher):
    """Sends each finish to PostgreSQL at once and reads its outcome later, on one thread.

    The UPDATE goes out in autocommit on a connection of its own through psycopg's libpq
    interface (``PQsendQueryParams``), and :meth:`finish` returns without waiting: the
    server commits it (the WAL flushed as ``synchronous_commit`` says) while the sender
    builds the next message, and :meth:`wait` reads the outcome. One statement is in
    flight at a time, as libpq's asynchronous interface outside pipeline mode requires.
    (SQLAlchemy's cursor events do not see these statements.)
    """

    def __init__(self, session: Session, model: Any, engine: Engine) -> None:
        from psycopg import pq

        super().__init__(session, model)
        self._command_ok = pq.ExecStatus.COMMAND_OK
        self._engine = engine
        self._numbered = type(engine.dialect)(paramstyle="numeric_dollar")  # $1, $2, ... as libpq takes them
        self._connection: Connection | None = None
        self._in_flight: tuple[int, dict[str, Any]] | None = None

    def finish(self, row_id: int, token: str, **values: Any) -> None:
        self.wait()
        names, params = self._params(row_id, token, values)
        sql, args = self._driver_args(names, params, self._numbered)
        encoded = [_pg_text(value) for value in args]
        try:
            if self._connection is None:
                self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._connection.connection.driver_connection.pgconn.send_query_params(sql.encode(), encoded)
        except Exception as error:
            self._fail(error)
        self._in_flight = (row_id, values)

    def wait(self) -> None:
        if self._in_flight is None:
            return
        row_id, values = self._in_flight
        self._in_flight = None
        try:
            pgconn = self._connection.connection.driver_connection.pgconn
            results = []
            while (result := pgconn.get_result()) is not None:
                results.append(result)
        except Exception as error:
            self._fail(error)
        if len(results) != 1 or results[0].status != self._command_ok:
            message = results[-1].error_message.decode(errors="replace").strip() if results else ""
            self._fail(RuntimeError(message or "the UPDATE returned no result"))
        self._done.append((row_id, values, results[0].command_tuples == 1))

    def _fail(self, error: BaseException):
        if self._connection is not None:
            self._connection.invalidate()  # in an unknown state: never reuse it
            self._connection = None
        raise FinishError(f"could not record the outcome of an outbox row: {error}") from error

    def close(self) -> None:
        try:
            self.wait()
        except FinishError:
            log.warning("the last outbox finish of this run could not be written", exc_info=True)
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _pg_text(value: Any) -> bytes | None:
    """``value`` in PostgreSQL's text input format (the statement casts each parameter)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, datetime):
        return value.isoformat().encode()
    raise TypeError(f"no text form for {type(value).__name__} in a finish")


def finisher_for(session: Session, model: Any) -> Finisher:
    """The fastest :class:`Finisher` the session's engine allows.

    PostgreSQL through psycopg 3: :class:`PostgresFinisher`; other engines whose
    connections may move between threads (SQLite files, other drivers):
    :class:`ThreadedFinisher`. SQLite in memory (``StaticPool`` or ``SingletonThreadPool``,
    whose one connection stays in its thread) or a pool too small for a second connection:
    :class:`Finisher`, on the session.
    """
    engine: Engine = session.get_bind(mapper=model)
    pool = engine.pool
    if isinstance(pool, SingletonThreadPool | StaticPool):
        return Finisher(session, model)
    overflow = getattr(pool, "_max_overflow", 0)  # -1: no limit
    if isinstance(pool, QueuePool) and 0 <= overflow and pool.size() + overflow < 2:
        return Finisher(session, model)  # no second connection to be had while the session holds one
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return PostgresFinisher(session, model, engine)
    return ThreadedFinisher(session, model, engine)

"""What the rules need from a transaction, without owning it (the host or the extension's
own entry point commits: see :mod:`flask_recovery.unit`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, SessionTransaction


def write_transaction(session: Session) -> None:
    """Make the session's transaction a write transaction now, without ending it.

    On SQLite, a connection with no transaction open at the driver gets ``BEGIN
    IMMEDIATE`` (the driver begins lazily, at the first write, and a deferred transaction
    that read first can fail to upgrade its lock); one already writing holds the lock
    and is left alone. PostgreSQL needs nothing: the rules lock the rows they decide on.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def savepoint(session: Session) -> Iterator[SessionTransaction]:
    """A write transaction (see :func:`write_transaction`) and a SAVEPOINT inside it.

    An exception inside the block rolls back to the savepoint (what the block wrote),
    leaving the caller's earlier work in place, and propagates.
    """
    write_transaction(session)
    with session.begin_nested() as nested:
        yield nested

"""Who commits: the host owns its transaction; the extension's own entry points commit once.

The rules in :mod:`flask_recovery.domain` work inside whatever transaction the session
has: they flush, never commit or roll back work a caller has pending. What a host calls
inside its own request (``visit_completed``, ``booking_created``, ``redeem_voucher``, ...)
therefore becomes durable with the host's own commit and is undone by its rollback.

The extension's own entry points own their unit of work and commit it once:

- its blueprints (staff pages, the JSON API, the client's answer pages) through
  :func:`commit_after_request`: an answer below 500 commits (a refusal recorded in the
  audit trail stays even though the answer is a 4xx), a 500 rolls back;
- its CLI commands and the Celery task through :func:`committing` around their work.

The rules take what they need from a transaction without owning it from
:mod:`flask_recovery.domain.db`: ``write_transaction`` takes the write lock up front (SQLite's ``BEGIN IMMEDIATE``
when no transaction is open yet, so two writers never race to upgrade a read lock) and
``savepoint`` undoes only a rule's own writes when it refuses half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Response, current_app
from sqlalchemy.orm import Session


def _session() -> Session:
    return current_app.extensions["recovery"].db.session


def commit_after_request(bp: Blueprint) -> None:
    """Commit the blueprint's requests once, after the view (and its error handler) ran."""

    @bp.after_request
    def _commit(response: Response) -> Response:
        finish(response.status_code < 500)
        return response


def finish(success: bool) -> None:
    """Commit the extension's own unit of work, or roll it back."""
    session = _session()
    if success:
        session.commit()
    else:
        session.rollback()


@contextmanager
def committing() -> Iterator[None]:
    """A CLI command's or task's unit of work: commit at the end, roll back on an error.

    A :class:`~flask_recovery.errors.RecoveryError` (a refusal, a mistake in the input)
    still commits what the rules recorded about it, like a page answering 4xx.
    """
    from .errors import RecoveryError

    try:
        yield
    except RecoveryError:
        finish(True)
        raise
    except BaseException:
        finish(False)
        raise
    finish(True)

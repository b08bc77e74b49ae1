"""Reconnect, the client's side: her answer to a check-in, and her unsubscribe.

The client acts through a signed link, not a staff login, so these rules take no
:class:`~flask_recovery.Staff`; their audit entries have no actor (``actor_id`` is
``None``: the client) and, like every audit entry, hold ids and choices, never her text.
The private answer only closes or reopens the case and alerts the managers: it never
decides who is asked for a public review.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from .. import signals
from ..errors import InvalidInput
from ..models import FollowUp, Incident, Notification, Unsubscribe, utcnow
from ..tokens import AlreadyAnswered, AlreadyUnsubscribed, ExpiredLink, UsedLink
from .audit import audit
from .db import write_transaction
from .incidents import CLOSABLE, REOPENABLE, clean_text

#: The two answers a check-in offers (stable keys).
ANSWERS = ("good", "not_right")


def followup_for_link(
    session: Session, followup_id: int, *, answering: bool, unsubscribing: bool = False
) -> FollowUp:
    """The follow-up a genuine link points at, if the link may still be used.

    Raises :class:`~flask_recovery.tokens.ExpiredLink` (410) when the row is gone and
    :class:`~flask_recovery.tokens.UsedLink` (409) when it was voided (``forget-client``)
    or, for an answer link (``answering=True``), its subclass ``AlreadyAnswered`` when the
    visit was already answered.
    """
    followup = session.get(FollowUp, followup_id)
    if followup is None:
        raise ExpiredLink("This link is no longer valid.")
    if followup.voided_at is not None:
        raise UsedLink("This link is no longer valid.")
    if answering and _answered(session, followup):
        raise AlreadyAnswered("You have already answered. Thank you!")
    if unsubscribing and session.get(Unsubscribe, followup.client_id) is not None:
        raise AlreadyUnsubscribed("You are already unsubscribed: we will not send you these mails again.")
    return followup


def _locked_followup(session: Session, followup_id: int, *, answering: bool, unsubscribing: bool = False) -> FollowUp:
    """Start a write transaction and return the usable follow-up (the caller's entry point
    ends the transaction, whether the link is refused or not)."""
    write_transaction(session)
    return followup_for_link(session, followup_id, answering=answering, unsubscribing=unsubscribing)


def _answered(session: Session, followup: FollowUp) -> bool:
    """Whether this visit's check-in (or its reminder) already has an answer."""
    stmt = select(FollowUp.id).where(FollowUp.booking_id == followup.booking_id, FollowUp.answer.is_not(None))
    return session.scalars(stmt.limit(1)).first() is not None


def record_answer(session: Session, followup_id: int, answer: Any, comment: Any = None) -> FollowUp:
    """Record the client's answer to a check-in, once per visit.

    ``good`` closes a resolved case; ``not_right`` reopens a resolved or closed case and
    queues a mail to the managers (a ``Notification`` of kind ``unhappy_answer``). Any
    scheduled mail for the same visit (a reminder) is cancelled. A second answer, by
    either the check-in's link or the reminder's, raises
    :class:`~flask_recovery.tokens.AlreadyAnswered` (a ``UsedLink``, 409), also when it
    races the first. Sends ``feedback_received`` once the answer is written (flushed).
    """
    if answer not in ANSWERS:
        raise InvalidInput(f"answer must be one of {list(ANSWERS)}.", field="answer")
    comment = clean_text(comment, "comment", required=False)
    followup = _locked_followup(session, followup_id, answering=True)
    now = utcnow()
    sibling = aliased(FollowUp)
    already = exists().where(sibling.booking_id == followup.booking_id, sibling.answer.is_not(None))
    result = session.execute(
        update(FollowUp)
        .where(FollowUp.id == followup.id, FollowUp.answer.is_(None), FollowUp.voided_at.is_(None), ~already)
        .values(answer=answer, answered_at=now, comment=comment)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # a concurrent answer (or forget-client) came first; nothing written
        session.expire(followup)
        followup_for_link(session, followup_id, answering=True)
        raise AlreadyAnswered("You have already answered. Thank you!")

    incident_status = None
    if followup.incident_id is not None:
        incident_status = _client_transition(session, followup, answer, now)
    if answer == "not_right":
        session.add(
            Notification(kind="unhappy_answer", subject_type="followup", subject_id=str(followup.id), created_at=now)
        )
    session.execute(
        update(FollowUp)
        .where(FollowUp.booking_id == followup.booking_id, FollowUp.id != followup.id, FollowUp.status == "scheduled")
        .values(status="cancelled", last_error="answered")
        .execution_options(synchronize_session=False)
    )
    audit(
        session,
        f"feedback.{answer}",
        actor=None,
        booking_id=followup.booking_id,
        client_id=followup.client_id,
        subject_type="followup",
        subject_id=followup.id,
        data={
            "answer": answer,
            "comment": comment is not None,
            "incident_id": followup.incident_id,
            "incident_status": incident_status,
        },
    )
    session.flush()
    session.refresh(followup)
    signals.send_robust(signals.feedback_received, followup=followup, answer=answer)
    return followup


def _client_transition(session: Session, followup: FollowUp, answer: str, now) -> str | None:
    """Close (``good``) or reopen (``not_right``) the follow-up's case; its new status or ``None``."""
    if answer == "good":
        action, from_statuses = "closed", CLOSABLE
        values: dict[str, Any] = {"status": "closed", "closed_at": now}
    else:
        action, from_statuses = "reopened", REOPENABLE
        values = {
            "status": "reopened",
            "reopened_at": now,
            "closed_at": None,
            "reopen_count": Incident.reopen_count + 1,
        }
    result = session.execute(
        update(Incident)
        .where(Incident.id == followup.incident_id, Incident.status.in_(from_statuses))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # still open, or already reopened by staff: leave it as it is
        return None
    audit(
        session,
        f"incident.{action}",
        actor=None,
        booking_id=followup.booking_id,
        client_id=followup.client_id,
        subject_type="incident",
        subject_id=followup.incident_id,
        data={"status": values["status"], "by": "client"},
    )
    return values["status"]


def unsubscribe(session: Session, followup_id: int) -> bool:
    """Stop check-in mail to the client of ``followup_id``; ``True`` if she was subscribed.

    Records an :class:`~flask_recovery.models.Unsubscribe` (by client id, no address) and
    cancels her scheduled follow-ups. Idempotent: a second call changes nothing.
    Raises :class:`~flask_recovery.tokens.UsedLink` for a voided link.
    """
    followup = _locked_followup(session, followup_id, answering=False, unsubscribing=True)
    client_id, booking_id = followup.client_id, followup.booking_id
    created = _insert_unsubscribe(session, client_id)
    cancelled = session.execute(
        update(FollowUp)
        .where(FollowUp.client_id == client_id, FollowUp.status == "scheduled")
        .values(status="cancelled", last_error="unsubscribed")
        .execution_options(synchronize_session=False)
    ).rowcount
    if created:
        audit(
            session,
            "client.unsubscribed",
            actor=None,
            booking_id=booking_id,
            client_id=client_id,
            subject_type="followup",
            subject_id=followup.id,
            data={"cancelled": cancelled},
        )
    session.flush()
    return created


def _insert_unsubscribe(session: Session, client_id: str) -> bool:
    """Insert the client's unsubscribe unless present; ``True`` if this call inserted it.

    ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL, so two presses at once never
    fail; other databases get a plain check-then-insert.
    """
    values = {"client_id": client_id, "at": utcnow()}
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(Unsubscribe).values(**values).on_conflict_do_nothing(index_elements=["client_id"])
        return session.execute(stmt.returning(Unsubscribe.client_id)).first() is not None
    if session.get(Unsubscribe, client_id) is not None:
        return False
    session.add(Unsubscribe(**values))
    session.flush()
    return True

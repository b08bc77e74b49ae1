"""Resolve: compensations bounded by staff authority, manager approvals, budgets, vouchers.

The authority ledger (:class:`~flask_recovery.models.BudgetUsage`) is charged with one
conditional UPDATE (``spent + amount <= per_month``) inside a write transaction that is
taken up front (``BEGIN IMMEDIATE`` on SQLite; row locks on PostgreSQL), so two desks
granting at the same second can never pass a limit.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import signals
from ..config import REMEDY_KINDS, authority_for, key
from ..entities import Booking, Staff
from ..errors import Conflict, InvalidInput, NotAllowed, NotFound
from ..models import BudgetUsage, Compensation, Erasure, Incident, Notification, utcnow
from .audit import audit
from .db import savepoint
from .incidents import clean_text, get_incident, get_scoped, require_permission

VOUCHER_KINDS = ("discount", "percent_discount")
_VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class ConductCase(Conflict):
    """Client abuse of staff earns no compensation."""

    code = "conduct_case"


class VoucherError(Conflict):
    """A voucher that cannot be redeemed (used, expired, another client's)."""

    code = "voucher_invalid"


# -- helpers -------------------------------------------------------------------------


def month_of(moment: datetime) -> str:
    """The calendar month of ``moment`` in ``RECOVERY_TIMEZONE``, as ``"2026-11"``."""
    tz = ZoneInfo(current_app.config[key("TIMEZONE")])
    return moment.astimezone(tz).strftime("%Y-%m")


class _Refused(Exception):
    """Raised inside a rule's savepoint: roll back its writes, audit ``reason``, raise ``error``."""

    def __init__(self, reason: str, error: Exception) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def _int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number (minor units).", field=field)
    return value


def value_of(kind: Any, amount: Any, percent: Any, booking: Booking) -> tuple[int, int | None]:
    """Validate a remedy and return ``(value in minor units, percent)``.

    ``gift``/``discount``/``refund`` take ``amount``; ``percent_discount`` takes ``percent``
    (1-100) of the booking's price; ``redo`` is worth the booking's price.
    """
    if not isinstance(kind, str) or kind not in REMEDY_KINDS:
        raise InvalidInput(f"kind must be one of {list(REMEDY_KINDS)}.", field="kind")
    amount = _int(amount, "amount")
    percent = _int(percent, "percent")
    ceiling = current_app.config[key("MAX_AMOUNT")]
    price = booking.price
    if kind in ("gift", "discount", "refund"):
        if percent is not None:
            raise InvalidInput(f"percent does not apply to {kind}; give amount.", field="percent")
        if amount is None:
            raise InvalidInput(f"amount is required for {kind}.", field="amount")
        if amount <= 0:
            raise InvalidInput("amount must be greater than zero.", field="amount")
        if amount > ceiling:
            raise InvalidInput(f"amount is implausibly large (at most {ceiling}).", field="amount")
        if kind == "refund" and price is not None and amount > price:
            raise InvalidInput(f"amount: a refund cannot exceed the visit's price ({price}).", field="amount")
        return amount, None
    if amount is not None:
        raise InvalidInput(f"amount does not apply to {kind}; it is valued from the booking's price.", field="amount")
    if price is None:
        raise InvalidInput(f"{kind} is valued from the booking's price, and this booking has none.", field="kind")
    if kind == "redo":
        if percent is not None:
            raise InvalidInput("percent does not apply to redo.", field="percent")
        return price, None
    if percent is None:
        raise InvalidInput("percent is required for percent_discount.", field="percent")
    if not 1 <= percent <= 100:
        raise InvalidInput("percent must be between 1 and 100.", field="percent")
    return (price * percent + 50) // 100, percent


def authority_summary(session: Session, staff: Staff, now: datetime | None = None) -> dict[str, Any]:
    """What ``staff`` may still grant alone: per grant, left this month, kinds."""
    limits = authority_for(current_app.config, staff.role)
    month = month_of(now or utcnow())
    spent = (
        session.scalar(select(BudgetUsage.spent).where(BudgetUsage.staff_id == staff.id, BudgetUsage.month == month))
        or 0
    )
    if limits is None:
        return {"per_grant": 0, "per_month": 0, "spent": spent, "left": 0, "kinds": [], "month": month}
    left = None if limits["per_month"] is None else max(0, limits["per_month"] - spent)
    return {
        "per_grant": limits["per_grant"],
        "per_month": limits["per_month"],
        "spent": spent,
        "left": left,
        "kinds": [k for k in REMEDY_KINDS if k in limits["kinds"]],
        "month": month,
    }


def _covers(limits: dict[str, Any] | None, kind: str, value: int) -> bool:
    return bool(
        limits is not None and kind in limits["kinds"] and (limits["per_grant"] is None or value <= limits["per_grant"])
    )


def _charge(session: Session, staff_id: str, month: str, value: int, per_month: int | None) -> bool:
    """Add ``value`` to the staff member's month unless that passes ``per_month``."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(BudgetUsage)
        .values(staff_id=staff_id, month=month, spent=0, grants=0)
        .on_conflict_do_nothing(index_elements=["staff_id", "month"])
    )
    stmt = (
        update(BudgetUsage)
        .where(BudgetUsage.staff_id == staff_id, BudgetUsage.month == month)
        .values(spent=BudgetUsage.spent + value, grants=BudgetUsage.grants + 1)
        .execution_options(synchronize_session=False)
    )
    if per_month is not None:
        stmt = stmt.where(BudgetUsage.spent + value <= per_month)
    return session.execute(stmt).rowcount == 1


def _new_voucher(compensation: Compensation, now: datetime) -> None:
    if compensation.kind in VOUCHER_KINDS:
        raw = "".join(secrets.choice(_VOUCHER_ALPHABET) for _ in range(8))
        compensation.voucher_code = f"{raw[:4]}-{raw[4:]}"
        compensation.voucher_expires_at = now + timedelta(days=current_app.config[key("VOUCHER_DAYS")])


def _refusal(
    session: Session, staff: Staff | None, action: str, subject_type: str, subject_id: Any, reason: str, **ids: Any
) -> None:
    """Record a refusal in the audit trail, in the caller's transaction (the rule's own
    writes are rolled back to its savepoint first; the extension's entry point commits
    the refusal even though it answers with an error)."""
    audit(
        session, action, actor=staff, subject_type=subject_type, subject_id=subject_id, data={"reason": reason}, **ids
    )
    session.flush()


# -- granting --------------------------------------------------------------------------


def grant_compensation(
    session: Session,
    incident_id: Any,
    booking_loader,
    staff: Staff | None,
    *,
    kind: Any,
    amount: Any = None,
    percent: Any = None,
    note: Any = None,
    idempotency_key: Any = None,
    now: datetime | None = None,
) -> tuple[Compensation, bool]:
    """Grant a remedy within ``staff``'s authority, or file it for approval above it.

    Returns ``(compensation, created)``; ``created`` is False when ``idempotency_key``
    repeats an earlier submission (a double click spends once). Above the authority a
    reason (``note``) is required and the compensation is ``pending_approval``.
    """
    require_permission(staff, "compensation.request")
    incident = get_incident(session, incident_id, staff)
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 64:
            raise InvalidInput("idempotency_key must be a string of 1 to 64 characters.", field="idempotency_key")
        earlier = session.scalar(
            select(Compensation).where(
                Compensation.requested_by == staff.id, Compensation.idempotency_key == idempotency_key
            )
        )
        if earlier is not None:
            return earlier, False
    ids = {"booking_id": incident.booking_id, "client_id": incident.client_id}
    if incident.conduct:
        _refusal(session, staff, "compensation.refused", "incident", incident.id, "conduct_case", **ids)
        raise ConductCase("Client conduct toward staff earns no compensation.")
    if incident.status == "closed":
        _refusal(session, staff, "compensation.refused", "incident", incident.id, "incident_closed", **ids)
        raise Conflict("The case is closed; reopen it before offering a remedy.")
    booking = booking_loader(incident.booking_id)
    value, percent = value_of(kind, amount, percent, booking)
    note = clean_text(note, "note", required=False)
    now = now or utcnow()
    limits = authority_for(current_app.config, staff.role)
    alone = _covers(limits, kind, value)
    if not alone and not note:
        raise InvalidInput(
            "note: this is above what your role may grant alone; give a reason and it goes to a manager.",
            field="note",
        )

    incident_pk = incident.id
    try:
        with savepoint(session):
            compensation, granted, reason = _write_grant(
                session,
                incident_pk,
                booking,
                staff,
                limits,
                alone,
                kind,
                value,
                percent,
                note,
                idempotency_key,
                now,
                ids,
            )
    except _Refused as refused:
        _refusal(session, staff, "compensation.refused", "incident", incident_pk, refused.reason, **ids)
        raise refused.error from None
    except IntegrityError:  # the same idempotency key raced in from a second request
        earlier = session.scalar(
            select(Compensation).where(
                Compensation.requested_by == staff.id, Compensation.idempotency_key == idempotency_key
            )
        )
        if earlier is None:
            raise
        return earlier, False
    audit(
        session,
        "compensation.granted" if granted else "compensation.requested",
        actor=staff,
        subject_type="compensation",
        subject_id=compensation.id,
        data={"kind": kind, "amount": value, **({"reason": reason} if reason else {})},
        **ids,
    )
    if not granted:
        session.add(
            Notification(
                kind="approval_requested",
                subject_type="compensation",
                subject_id=str(compensation.id),
                status="pending",
                created_at=now,
            )
        )
    session.flush()
    incident = session.get(Incident, incident_pk)
    if granted:
        signals.send_robust(signals.compensation_granted, compensation=compensation, incident=incident, staff=staff)
    else:
        signals.send_robust(signals.compensation_requested, compensation=compensation, incident=incident, staff=staff)
    return compensation, True


def _write_grant(
    session: Session,
    incident_pk: int,
    booking: Booking,
    staff: Staff,
    limits: dict[str, Any] | None,
    alone: bool,
    kind: str,
    value: int,
    percent: int | None,
    note: str | None,
    idempotency_key: str | None,
    now: datetime,
    ids: dict[str, Any],
) -> tuple[Compensation, bool, str | None]:
    """The grant's writes, inside its savepoint: decide on the case's state under the lock,
    charge the ledger, add the compensation. Raises :class:`_Refused` to refuse."""
    # the case may have been closed since we looked: decide on its state inside the write transaction
    status_query = select(Incident.status).where(Incident.id == incident_pk)
    if session.get_bind().dialect.name == "postgresql":
        status_query = status_query.with_for_update()
    if session.scalar(status_query) == "closed":
        raise _Refused("incident_closed", Conflict("The case is closed; reopen it before offering a remedy."))
    month = month_of(now)
    granted = alone and limits is not None and _charge(session, staff.id, month, value, limits["per_month"])
    if alone and not granted and not note:
        raise _Refused(
            "monthly_budget_exhausted",
            InvalidInput(
                "note: your authority for this month is used up; give a reason and it goes to a manager.",
                field="note",
            ),
        )
    compensation = Compensation(
        incident_id=incident_pk,
        booking_id=ids["booking_id"],
        client_id=ids["client_id"],
        location=booking.location,
        kind=kind,
        amount=value,
        percent=percent,
        currency=current_app.config[key("CURRENCY")],
        status="granted" if granted else "pending_approval",
        note=note,
        requested_by=staff.id,
        requested_by_role=staff.role,
        requested_by_name=staff.name[:120],
        idempotency_key=idempotency_key,
        created_at=now,
    )
    if granted:
        compensation.charged_to = staff.id
        compensation.charged_month = month
        compensation.decided_at = now
        _new_voucher(compensation, now)
    session.add(compensation)
    session.flush()
    reason = None if granted else ("monthly_budget_exhausted" if alone else "above_authority")
    return compensation, granted, reason


def get_compensation(session: Session, compensation_id: Any, staff: Staff) -> Compensation:
    """The compensation if ``staff`` may see it (location scoping), else 404."""
    return get_scoped(session, Compensation, compensation_id, staff, "No such compensation.")


def decide_compensation(
    session: Session,
    compensation_id: Any,
    staff: Staff | None,
    *,
    approve: bool,
    note: Any = None,
    now: datetime | None = None,
) -> Compensation:
    """Approve (grant) or reject a pending request. 403 for one's own request or beyond
    one's authority; 409 when it is no longer pending or the approver's month is used up."""
    require_permission(staff, "compensation.approve")
    compensation = get_compensation(session, compensation_id, staff)
    note = clean_text(note, "note", required=False)
    ids = {"booking_id": compensation.booking_id, "client_id": compensation.client_id}
    pk = compensation.id
    if compensation.requested_by == staff.id:
        _refusal(session, staff, "compensation.decision_refused", "compensation", pk, "own_request", **ids)
        raise NotAllowed("Nobody approves or rejects their own request.")
    limits = authority_for(current_app.config, staff.role)
    if not _covers(limits, compensation.kind, compensation.amount):
        _refusal(session, staff, "compensation.decision_refused", "compensation", pk, "above_approver_authority", **ids)
        raise NotAllowed("This is above what your role may approve or reject.")
    now = now or utcnow()
    try:
        with savepoint(session):
            _write_decision(session, pk, staff, limits, approve=approve, note=note, now=now)
    except _Refused as refused:
        _refusal(session, staff, "compensation.decision_refused", "compensation", pk, refused.reason, **ids)
        raise refused.error from None
    session.expire(compensation)
    compensation = session.get(Compensation, pk)
    if approve:
        _new_voucher(compensation, now)
    audit(
        session,
        "compensation.approved" if approve else "compensation.rejected",
        actor=staff,
        subject_type="compensation",
        subject_id=pk,
        data={"kind": compensation.kind, "amount": compensation.amount},
        **ids,
    )
    session.flush()
    signals.send_robust(signals.compensation_decided, compensation=compensation, staff=staff, approved=approve)
    if approve:
        incident = session.get(Incident, compensation.incident_id)
        signals.send_robust(signals.compensation_granted, compensation=compensation, incident=incident, staff=staff)
    return compensation


def _write_decision(
    session: Session,
    pk: int,
    staff: Staff,
    limits: dict[str, Any] | None,
    *,
    approve: bool,
    note: str | None,
    now: datetime,
) -> None:
    """The decision's writes, inside its savepoint: only a request still pending is decided,
    and an approval is charged to the approver's month."""
    client_id = session.scalar(select(Compensation.client_id).where(Compensation.id == pk))
    if approve and session.get(Erasure, client_id) is not None:
        raise Conflict("This client's data was erased; the request can only be rejected.")
    values: dict[str, Any] = {
        "status": "granted" if approve else "rejected",
        "decided_by": staff.id,
        "decided_by_name": staff.name[:120],
        "decided_at": now,
        "decision_note": note,
    }
    if approve:
        values.update(charged_to=staff.id, charged_month=month_of(now))
    result = session.execute(
        update(Compensation)
        .where(Compensation.id == pk, Compensation.status == "pending_approval")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        current = session.scalar(select(Compensation.status).where(Compensation.id == pk))
        raise Conflict(f"This request is already {str(current).replace('_', ' ')}.")
    amount = session.scalar(select(Compensation.amount).where(Compensation.id == pk))
    if approve and (limits is None or not _charge(session, staff.id, month_of(now), amount, limits["per_month"])):
        raise _Refused(
            "monthly_budget_exhausted",
            Conflict("Your own authority for this month is used up; another manager must approve it."),
        )


# -- suggestions (the compensation matrix) ----------------------------------------------

#: Suggested value as a share of the visit's price, by severity (the field's 60-120%).
SUGGESTED_SHARE = {"minor": 60, "major": 90, "critical": 120}
#: Above this share of the price the widget warns.
WARN_SHARE = 150


def suggestions(session: Session, incident: Incident, booking: Booking) -> dict[str, Any]:
    """The remedies ``RECOVERY_MATRIX`` suggests for the incident, each with a value.

    For a client's first, minor failure an apology alone is suggested. Conduct cases get
    nothing.
    """
    if incident.conduct:
        return {"apology_only": False, "remedies": []}
    if incident.severity == "minor":
        earlier = session.scalar(
            select(func.count())
            .select_from(Incident)
            .where(Incident.client_id == incident.client_id, Incident.id != incident.id, Incident.conduct.is_(False))
        )
        if not earlier:
            return {"apology_only": True, "remedies": []}
    kinds = current_app.config[key("MATRIX")].get(incident.category, {}).get(incident.severity, [])
    share = SUGGESTED_SHARE[incident.severity]
    price = booking.price
    remedies = []
    for kind in kinds:
        item: dict[str, Any] = {"kind": kind, "amount": None, "percent": None}
        if kind == "redo":
            item["amount"] = price
        elif kind == "percent_discount":
            item["percent"] = min(100, share)
            item["amount"] = None if price is None else (price * item["percent"] + 50) // 100
        elif price is not None:
            item["amount"] = (price * share + 50) // 100
        if price is None and kind in ("redo", "percent_discount"):
            continue
        remedies.append(item)
    return {"apology_only": not remedies, "remedies": remedies}


def value_warnings(compensation: Compensation, booking: Booking) -> list[str]:
    """``["above_150_percent"]`` when the remedy is worth more than 1.5x the visit."""
    if booking.price and compensation.amount * 100 > booking.price * WARN_SHARE:
        return ["above_150_percent"]
    return []


# -- vouchers ----------------------------------------------------------------------------


def redeem_voucher(session: Session, code: Any, booking: Booking, now: datetime | None = None) -> Compensation:
    """Use a voucher on ``booking`` (once). 404 unknown; 409 used, expired or another client's."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("code is required.", field="code")
    normal = "".join(code.upper().split())
    if len(normal) == 8 and "-" not in normal:
        normal = f"{normal[:4]}-{normal[4:]}"
    if len(normal) > 32:
        raise NotFound("No such voucher.")
    compensation = session.scalar(select(Compensation).where(Compensation.voucher_code == normal))
    if compensation is None or compensation.status != "granted":
        raise NotFound("No such voucher.")
    now = now or utcnow()
    if compensation.redeemed_at is not None:
        raise VoucherError("This voucher has already been used.")
    if session.get(Erasure, compensation.client_id) is not None:
        raise VoucherError("This voucher is no longer valid.")
    if compensation.voucher_expires_at is not None and compensation.voucher_expires_at <= now:
        raise VoucherError("This voucher has expired.")
    if compensation.client_id != booking.client_id:
        raise VoucherError("This voucher belongs to another client.")
    pk = compensation.id
    result = session.execute(
        update(Compensation)
        .where(Compensation.id == pk, Compensation.redeemed_at.is_(None))
        .values(redeemed_at=now, redeemed_booking_id=booking.id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # redeemed by another request since we looked; nothing written
        raise VoucherError("This voucher has already been used.")
    audit(
        session,
        "voucher.redeemed",
        actor=None,
        booking_id=booking.id,
        client_id=booking.client_id,
        subject_type="compensation",
        subject_id=pk,
    )
    session.flush()
    session.refresh(compensation)
    return compensation


# -- reading -----------------------------------------------------------------------------


def compensations_for_booking(session: Session, booking_id: str) -> list[Compensation]:
    """The booking's compensations, newest first."""
    return list(
        session.scalars(
            select(Compensation)
            .where(Compensation.booking_id == booking_id)
            .order_by(Compensation.created_at.desc(), Compensation.id.desc())
        )
    )


def pending_requests(session: Session, staff: Staff | None) -> list[Compensation]:
    """Requests waiting for a decision that ``staff`` may see, oldest first."""
    require_permission(staff, "compensation.approve")
    stmt = select(Compensation).where(Compensation.status == "pending_approval")
    if staff.location is not None:
        stmt = stmt.where(Compensation.location == staff.location)
    return list(session.scalars(stmt.order_by(Compensation.created_at, Compensation.id)))


def month_spend(session: Session, staff: Staff | None, month: str) -> dict[str, Any]:
    """Granted compensations in ``month`` (``YYYY-MM``) per staff member and in total."""
    require_permission(staff, "budget.view")
    name = case(
        (Compensation.charged_to == Compensation.requested_by, Compensation.requested_by_name),
        else_=Compensation.decided_by_name,
    )
    stmt = (
        select(
            Compensation.charged_to,
            func.max(name),
            func.count(),
            func.coalesce(func.sum(Compensation.amount), 0),
        )
        .where(Compensation.status == "granted", Compensation.charged_month == month)
        .group_by(Compensation.charged_to)
    )
    if staff.location is not None:
        stmt = stmt.where(Compensation.location == staff.location)
    rows = [
        {"staff_id": who, "name": label, "grants": n, "spent": int(total)}
        for who, label, n, total in session.execute(stmt)
    ]
    rows.sort(key=lambda r: (-r["spent"], r["staff_id"] or ""))
    total = sum(r["spent"] for r in rows)
    pending_query = select(func.count()).select_from(Compensation).where(Compensation.status == "pending_approval")
    if staff.location is not None:
        pending_query = pending_query.where(Compensation.location == staff.location)
    pending = session.scalar(pending_query)
    budget = current_app.config[key("MONTHLY_BUDGET")]
    return {
        "month": month,
        "currency": current_app.config[key("CURRENCY")],
        "staff": rows,
        "total": total,
        "budget": budget,
        "left": None if budget is None else budget - total,
        "pending_requests": pending or 0,
    }

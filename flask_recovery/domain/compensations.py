"""Resolve: compensations bounded by staff authority, manager approvals, budgets, vouchers.

The authority ledger (:class:`~flask_recovery.models.BudgetUsage`) is charged with one
conditional UPDATE (``spent + amount <= per_month``) inside a write transaction that is
taken up front (``BEGIN IMMEDIATE`` on SQLite; row locks on PostgreSQL), so two desks
granting at the same second can never pass a limit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from ..errors import Conflict, InvalidInput, NotAllowed, NotFound, RecoveryError, not_a_choice, required
from ..i18n import gettext as _
from ..models import BudgetUsage, Compensation, Erasure, Incident, Notification, utcnow
from ..money import format_money
from ..vocabulary import category_label, compensation_status_label, kind_label, severity_label
from .audit import audit
from .db import savepoint
from .incidents import clean_text, get_incident, get_scoped, require_permission

log = logging.getLogger("flask_recovery")

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


#: Remedies valued at the ``amount`` sent; the others are valued from the booking's price.
AMOUNT_KINDS = ("gift", "discount", "refund")


def _int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if field == "percent":
            message = _("Give the percent as a whole number between 1 and 100.")
        else:
            message = _("Give the amount as a whole number of minor units (cents, kopecks).")
        raise InvalidInput(message, field=field, code="not_whole_number")
    return value


def _not_applicable(field: str) -> InvalidInput:
    if field == "percent":
        return InvalidInput(_("Leave the percent empty for this remedy."), field=field, code="not_applicable")
    return InvalidInput(
        _("Leave the amount empty: this remedy is valued from the visit's price."), field=field, code="not_applicable"
    )


def value_of(kind: Any, amount: Any, percent: Any, booking: Booking) -> tuple[int, int | None]:
    """Validate a remedy and return ``(value in minor units, percent)``.

    ``gift``/``discount``/``refund`` take ``amount``; ``percent_discount`` takes ``percent``
    (1-100) of the booking's price; ``redo`` is worth the booking's price. A refund is at
    most the visit's price (what other refunds on the visit leave is decided under the
    grant's lock: :func:`grant_compensation`). Refusals are :class:`InvalidInput` naming
    the field, with a ``code``: ``required``, ``invalid_choice``, ``not_whole_number``,
    ``not_applicable``, ``not_positive``, ``too_large``, ``refund_exceeds_price``,
    ``no_price``, ``out_of_range``.
    """
    if kind is None or kind == "":
        raise required("kind")
    if not isinstance(kind, str) or kind not in REMEDY_KINDS:
        raise not_a_choice("kind")
    amount = _int(amount, "amount")
    percent = _int(percent, "percent")
    ceiling = current_app.config[key("MAX_AMOUNT")]
    price = booking.price
    if kind in AMOUNT_KINDS:
        if percent is not None:
            raise _not_applicable("percent")
        if amount is None:
            raise required("amount")
        if amount <= 0:
            raise InvalidInput(_("Enter an amount greater than zero."), field="amount", code="not_positive")
        if amount > ceiling:
            raise InvalidInput(
                _("This amount is implausibly large: at most %(limit)s.", limit=format_money(ceiling)),
                field="amount",
                code="too_large",
            )
        if kind == "refund" and price is not None and amount > price:
            raise InvalidInput(
                _("A refund cannot be more than the visit's price (%(price)s).", price=format_money(price)),
                field="amount",
                code="refund_exceeds_price",
            )
        return amount, None
    if amount is not None:
        raise _not_applicable("amount")
    if price is None:
        raise InvalidInput(
            _("This remedy is valued from the visit's price, and this booking has none: choose another remedy."),
            field="kind",
            code="no_price",
        )
    if kind == "redo":
        if percent is not None:
            raise _not_applicable("percent")
        return price, None
    if percent is None:
        raise required("percent")
    if not 1 <= percent <= 100:
        raise InvalidInput(_("Enter a percent between 1 and 100."), field="percent", code="out_of_range")
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


# -- the visit's totals (money adds up per visit) ----------------------------------------

#: What counts as given on a visit when a remedy is asked for: granted and still pending.
GIVEN = ("granted", "pending_approval")


def _lock_booking(session: Session, booking_id: str) -> dict[int, str]:
    """The status of every incident of the booking, by id, with their rows locked.

    Every grant and approval on a booking takes these locks first, in id order, so the
    totals it then reads cannot change under it: on PostgreSQL ``SELECT ... FOR UPDATE``
    (its oldest incident is in every such set, so two desks on two incidents of one visit
    queue too); on SQLite the write transaction (``BEGIN IMMEDIATE``) already excludes
    every other writer.
    """
    stmt = select(Incident.id, Incident.status).where(Incident.booking_id == booking_id).order_by(Incident.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {row.id: row.status for row in session.execute(stmt)}


def _visit_limit(
    session: Session,
    booking_id: str,
    price: int | None,
    kind: str,
    value: int,
    *,
    counted: tuple[str, ...] = GIVEN,
    exclude: int | None = None,
) -> tuple[str, RecoveryError] | None:
    """Whether one more ``kind`` worth ``value`` keeps the visit's totals; ``(reason,
    error)`` when it would not. Refunds (``counted`` ones) never total more than the
    price; a visit gets at most one redo."""
    if kind not in ("refund", "redo") or (kind == "refund" and price is None):
        return None
    stmt = select(func.count(), func.coalesce(func.sum(Compensation.amount), 0)).where(
        Compensation.booking_id == booking_id, Compensation.kind == kind, Compensation.status.in_(counted)
    )
    if exclude is not None:
        stmt = stmt.where(Compensation.id != exclude)
    count, total = session.execute(stmt).one()
    if kind == "redo":
        if not count:
            return None
        return "redo_already_given", Conflict(
            _("This visit already has a free redo, given or waiting for a manager: a visit gets one redo."),
            field="kind",
            code="redo_already_given",
        )
    total = int(total)
    if total + value <= price:
        return None
    left = max(0, price - total)
    if left:
        message = _(
            "Refunds on this visit would come to %(total)s, more than its price (%(price)s): "
            "at most %(left)s more can be refunded.",
            total=format_money(total + value),
            price=format_money(price),
            left=format_money(left),
        )
    else:
        message = _(
            "Refunds on this visit already come to its price (%(price)s): nothing more can be refunded.",
            price=format_money(price),
        )
    return "refund_exceeds_price", Conflict(message, field="amount", code="refund_exceeds_price")


def _closed_for_remedy() -> Conflict:
    return Conflict(_("The case is closed: reopen it before offering a remedy."), code="incident_closed")


# -- idempotency keys ------------------------------------------------------------------


def _check_key(value: Any) -> str | None:
    """The idempotency key (1 to 64 printable characters), ``None`` when absent, else 422."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise InvalidInput(
            _("The idempotency key must be a text of 1 to 64 characters."), field="idempotency_key", code="invalid"
        )
    if not value.isprintable():
        raise InvalidInput(
            _("Remove the invisible control characters."), field="idempotency_key", code="control_characters"
        )
    return value


def _by_key(session: Session, staff: Staff, idempotency_key: str) -> Compensation | None:
    return session.scalar(
        select(Compensation).where(
            Compensation.requested_by == staff.id, Compensation.idempotency_key == idempotency_key
        )
    )


def _same_request(earlier: Compensation, incident_id: int, kind: Any, amount: Any, percent: Any, note: Any) -> bool:
    """Whether a request repeats the one that made ``earlier``: the fingerprint (incident,
    kind, amount and percent as sent, note) is read back from the stored row, which keeps
    each of them (an amount is stored as sent for the kinds valued at it, and absent from a
    request of the others)."""

    def sent(value: Any) -> Any:
        return None if value is None or value == "" else value

    def same(value: Any, stored: Any) -> bool:
        value = sent(value)
        if value is None or stored is None:
            return value is None and stored is None
        return type(value) is int and value == stored

    if earlier.incident_id != incident_id or not isinstance(kind, str) or earlier.kind != kind:
        return False
    if not same(amount, earlier.amount if earlier.kind in AMOUNT_KINDS else None) or not same(percent, earlier.percent):
        return False
    try:
        return clean_text(note, "note", required=False) == earlier.note
    except InvalidInput:
        return False


def _repeat(session: Session, staff: Staff, earlier: Compensation, incident: Incident, request: dict[str, Any]):
    """The earlier remedy for a repeated key with the same request; 409 for another request."""
    if _same_request(earlier, incident.id, **request):
        return earlier
    ids = {"booking_id": incident.booking_id, "client_id": incident.client_id}
    _refusal(session, staff, "compensation.refused", "incident", incident.id, "idempotency_key_reused", **ids)
    raise Conflict(
        _("This idempotency key was already used for another remedy request; send a new key with a new request."),
        field="idempotency_key",
        code="idempotency_key_reused",
    )


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

    Returns ``(compensation, created)``. Above the authority (or with the month's
    authority used up) the compensation is ``pending_approval``: a request for a manager,
    ``note`` optional (the incident tells the manager what happened).

    ``idempotency_key`` makes a retry safe: the same key with the same request (kind,
    amount, percent, note) on the same incident returns the earlier remedy with
    ``created`` False (a double click spends once); the key with another request or on
    another incident is a 409 ``idempotency_key_reused``.

    Money adds up per visit, decided under the booking's lock: refunds on one booking
    (granted and pending, over all its incidents) never total more than its price (409
    ``refund_exceeds_price``), and a booking gets one redo (409 ``redo_already_given``).
    Refusals of the case's state are audited as ``compensation.refused``.
    """
    require_permission(staff, "compensation.request")
    incident = get_incident(session, incident_id, staff)
    idempotency_key = _check_key(idempotency_key)
    request = {"kind": kind, "amount": amount, "percent": percent, "note": note}
    if idempotency_key is not None:
        earlier = _by_key(session, staff, idempotency_key)
        if earlier is not None:
            return _repeat(session, staff, earlier, incident, request), False
    ids = {"booking_id": incident.booking_id, "client_id": incident.client_id}
    if incident.conduct:
        _refusal(session, staff, "compensation.refused", "incident", incident.id, "conduct_case", **ids)
        raise ConductCase(_("Client conduct toward staff earns no compensation."))
    if incident.status == "closed":
        _refusal(session, staff, "compensation.refused", "incident", incident.id, "incident_closed", **ids)
        raise _closed_for_remedy()
    booking = booking_loader(incident.booking_id)
    value, percent = value_of(kind, amount, percent, booking)
    note = clean_text(note, "note", required=False)
    now = now or utcnow()
    limits = authority_for(current_app.config, staff.role)
    alone = _covers(limits, kind, value)

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
        earlier = _by_key(session, staff, idempotency_key) if idempotency_key is not None else None
        if earlier is None:
            raise
        return _repeat(session, staff, earlier, session.get(Incident, incident_pk), request), False
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
    """The grant's writes, inside its savepoint: under the booking's lock decide on the
    case's state and the visit's totals, charge the ledger, add the compensation. Raises
    :class:`_Refused` to refuse."""
    # the case may have been closed, and the visit given more, since we looked: decide under the lock
    if _lock_booking(session, ids["booking_id"]).get(incident_pk) == "closed":
        raise _Refused("incident_closed", _closed_for_remedy())
    refused = _visit_limit(session, ids["booking_id"], booking.price, kind, value)
    if refused is not None:
        raise _Refused(*refused)
    month = month_of(now)
    granted = alone and limits is not None and _charge(session, staff.id, month, value, limits["per_month"])
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
    return get_scoped(session, Compensation, compensation_id, staff, _("No such compensation."))


def _price(booking_loader: Any, booking_id: str) -> int | None:
    """The booking's price from the host's loader, ``None`` when unknown."""
    if booking_loader is None:
        return None
    try:
        booking = booking_loader(booking_id)
    except NotFound:
        return None
    return None if booking is None else booking.price


def decide_compensation(
    session: Session,
    compensation_id: Any,
    staff: Staff | None,
    *,
    approve: bool,
    note: Any = None,
    now: datetime | None = None,
    booking_loader: Any = None,
) -> Compensation:
    """Approve (grant) or reject a pending request. 403 for one's own request or beyond
    one's authority; 409 when it is no longer pending (``already_decided``) or the
    approver's month is used up (``monthly_budget_exhausted``).

    An approval is decided under the booking's lock, like a grant: refused on a closed
    case (``incident_closed``), when the refunds granted on the visit would pass its price
    (``refund_exceeds_price``; the price comes from ``booking_loader``, the host's
    ``booking_id -> Booking``; without one that check is skipped) or when the visit already
    has a granted redo (``redo_already_given``). A rejection is always possible.
    """
    require_permission(staff, "compensation.approve")
    compensation = get_compensation(session, compensation_id, staff)
    note = clean_text(note, "note", required=False)
    ids = {"booking_id": compensation.booking_id, "client_id": compensation.client_id}
    pk = compensation.id
    if compensation.requested_by == staff.id:
        _refusal(session, staff, "compensation.decision_refused", "compensation", pk, "own_request", **ids)
        raise NotAllowed(_("Nobody approves or rejects their own request."))
    limits = authority_for(current_app.config, staff.role)
    if not _covers(limits, compensation.kind, compensation.amount):
        _refusal(session, staff, "compensation.decision_refused", "compensation", pk, "above_approver_authority", **ids)
        raise NotAllowed(_("This is above what your role may approve or reject."))
    price = _price(booking_loader, compensation.booking_id) if approve and compensation.kind == "refund" else None
    now = now or utcnow()
    try:
        with savepoint(session):
            _write_decision(session, pk, staff, limits, approve=approve, note=note, now=now, price=price)
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


def _already_decided(status: Any) -> Conflict:
    return Conflict(
        _("Someone has just decided this request: it is now %(status)s.", status=compensation_status_label(status)),
        code="already_decided",
    )


def _write_decision(
    session: Session,
    pk: int,
    staff: Staff,
    limits: dict[str, Any] | None,
    *,
    approve: bool,
    note: str | None,
    now: datetime,
    price: int | None,
) -> None:
    """The decision's writes, inside its savepoint: only a request still pending is decided,
    an approval under the booking's lock (the case open, the visit's totals kept) and
    charged to the approver's month."""
    row = session.execute(
        select(Compensation.client_id, Compensation.booking_id, Compensation.incident_id, Compensation.kind).where(
            Compensation.id == pk
        )
    ).one()
    if approve:
        statuses = _lock_booking(session, row.booking_id)
        current = session.scalar(select(Compensation.status).where(Compensation.id == pk))
        if current != "pending_approval":
            raise _already_decided(current)
        if statuses.get(row.incident_id) == "closed":
            raise _Refused(
                "incident_closed",
                Conflict(_("The case is closed: reopen it before approving a remedy on it."), code="incident_closed"),
            )
        if session.get(Erasure, row.client_id) is not None:
            raise _Refused(
                "client_erased",
                Conflict(_("This client's data was erased: the request can only be rejected."), code="client_erased"),
            )
        amount = session.scalar(select(Compensation.amount).where(Compensation.id == pk))
        # what is granted on the visit counts here; other requests are checked when they are decided
        refused = _visit_limit(session, row.booking_id, price, row.kind, amount, counted=("granted",), exclude=pk)
        if refused is not None:
            raise _Refused(*refused)
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
        raise _already_decided(session.scalar(select(Compensation.status).where(Compensation.id == pk)))
    amount = session.scalar(select(Compensation.amount).where(Compensation.id == pk))
    if approve and (limits is None or not _charge(session, staff.id, month_of(now), amount, limits["per_month"])):
        raise _Refused(
            "monthly_budget_exhausted",
            Conflict(
                _("Your own authority for this month is used up: another manager must approve it."),
                code="monthly_budget_exhausted",
            ),
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
        raise required("code")
    normal = "".join(code.upper().split())
    if len(normal) == 8 and "-" not in normal:
        normal = f"{normal[:4]}-{normal[4:]}"
    if len(normal) > 32:
        raise NotFound(_("No such voucher."))
    compensation = session.scalar(select(Compensation).where(Compensation.voucher_code == normal))
    if compensation is None or compensation.status != "granted":
        raise NotFound(_("No such voucher."))
    now = now or utcnow()
    if compensation.redeemed_at is not None:
        raise VoucherError(_("This voucher has already been used."))
    if session.get(Erasure, compensation.client_id) is not None:
        raise VoucherError(_("This voucher is no longer valid."))
    if compensation.voucher_expires_at is not None and compensation.voucher_expires_at <= now:
        raise VoucherError(_("This voucher has expired."))
    if compensation.client_id != booking.client_id:
        raise VoucherError(_("This voucher belongs to another client."))
    pk = compensation.id
    result = session.execute(
        update(Compensation)
        .where(Compensation.id == pk, Compensation.redeemed_at.is_(None))
        .values(redeemed_at=now, redeemed_booking_id=booking.id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # redeemed by another request since we looked; nothing written
        raise VoucherError(_("This voucher has already been used."))
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


# -- the approval card ------------------------------------------------------------------


@dataclass(frozen=True)
class GivenRemedy:
    """A remedy already granted or asked for on the visit, as the approval card lists it."""

    id: int
    kind: str
    amount: int
    percent: int | None
    status: str
    currency: str

    @property
    def kind_label(self) -> str:
        return kind_label(self.kind)

    @property
    def amount_text(self) -> str:
        return format_money(self.amount, self.currency)

    @property
    def status_label(self) -> str:
        return compensation_status_label(self.status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "amount": self.amount,
            "percent": self.percent,
            "status": self.status,
            "currency": self.currency,
        }


@dataclass
class ApprovalCard:
    """What a manager needs to decide a request: the client, what happened, the visit's
    price and what was already given on that visit (one source for the approvals page and
    the approval-request mail). Labels and money are rendered in the reader's locale when
    read."""

    compensation: Compensation
    client_id: str
    client_name: str | None
    service: str | None
    visit_at: datetime | None
    price: int | None
    currency: str
    category: str | None
    severity: str | None
    description: str | None
    given: list[GivenRemedy] = field(default_factory=list)

    @property
    def kind_label(self) -> str:
        return kind_label(self.compensation.kind)

    @property
    def amount_text(self) -> str:
        return format_money(self.compensation.amount, self.currency)

    @property
    def price_text(self) -> str:
        return format_money(self.price, self.currency)

    @property
    def category_label(self) -> str:
        return category_label(self.category) if self.category else ""

    @property
    def severity_label(self) -> str:
        return severity_label(self.severity) if self.severity else ""

    @property
    def refunded(self) -> int:
        """Refunds on the visit already granted or asked for (this request not counted)."""
        return sum(g.amount for g in self.given if g.kind == "refund")

    @property
    def refunded_text(self) -> str:
        return format_money(self.refunded, self.currency)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON (amounts in minor units)."""
        return {
            "compensation_id": self.compensation.id,
            "client_id": self.client_id,
            "client_name": self.client_name,
            "service": self.service,
            "visit_at": None if self.visit_at is None else self.visit_at.isoformat(),
            "price": self.price,
            "currency": self.currency,
            "category": self.category,
            "severity": self.severity,
            "description": self.description,
            "refunded": self.refunded,
            "given": [g.to_dict() for g in self.given],
        }


def approval_cards(
    session: Session, requests: list[Compensation], load_bookings: Callable[[list[str]], Mapping[str, Booking]]
) -> list[ApprovalCard]:
    """An :class:`ApprovalCard` per request, in order: three queries and one call of
    ``load_bookings`` (the host's bookings by id, e.g. ``Recovery.load_bookings``)
    whatever the number of requests. A booking the host no longer knows (or a loader
    that fails, logged) leaves the client's name and the price out."""
    if not requests:
        return []
    booking_ids = sorted({c.booking_id for c in requests})
    try:
        bookings = dict(load_bookings(booking_ids))
    except Exception:  # the manager still decides; the card says what the extension knows
        log.exception("approval card: loading bookings %s failed", booking_ids)
        bookings = {}
    incidents = {
        i.id: i for i in session.scalars(select(Incident).where(Incident.id.in_({c.incident_id for c in requests})))
    }
    given: dict[str, list[Compensation]] = {}
    for row in session.scalars(
        select(Compensation)
        .where(Compensation.booking_id.in_(booking_ids), Compensation.status.in_(GIVEN))
        .order_by(Compensation.created_at, Compensation.id)
    ):
        given.setdefault(row.booking_id, []).append(row)
    cards = []
    for request in requests:
        booking = bookings.get(request.booking_id)
        incident = incidents.get(request.incident_id)
        cards.append(
            ApprovalCard(
                compensation=request,
                client_id=request.client_id,
                client_name=booking.client_name if booking else None,
                service=booking.service if booking else None,
                visit_at=booking.starts_at if booking else (incident.visit_started_at if incident else None),
                price=booking.price if booking else None,
                currency=request.currency,
                category=incident.category if incident else None,
                severity=incident.severity if incident else None,
                description=None if incident is None or incident.conduct else incident.description,
                given=[
                    GivenRemedy(g.id, g.kind, g.amount, g.percent, g.status, g.currency)
                    for g in given.get(request.booking_id, [])
                    if g.id != request.id
                ],
            )
        )
    return cards


def approval_card(
    session: Session, request: Compensation, load_bookings: Callable[[list[str]], Mapping[str, Booking]]
) -> ApprovalCard:
    """The :class:`ApprovalCard` of one request (for the approval-request mail)."""
    return approval_cards(session, [request], load_bookings)[0]


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

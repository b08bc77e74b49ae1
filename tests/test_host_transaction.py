"""The host owns its transaction: what a host calls inside its own request works in its
``db.session`` transaction. Its commit keeps both its rows and the extension's; its
rollback undoes both. The extension's own pages and API commit their own work.

This host has its own model (a payment) and, unlike the shared test host, never commits
behind a test's back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_recovery import Booking, Recovery, Staff, domain
from flask_recovery.models import AuditEntry, Compensation, Erasure, Flag, Incident, Visit

ADMIN = Staff(id="s-admin", name="Irina", role="admin")


class Base(DeclarativeBase):
    pass


class Payment(Base):
    __tablename__ = "host_payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[str] = mapped_column(sa.String(64))
    amount: Mapped[int]


@pytest.fixture
def host_app(db_url):
    app = Flask("payments_host")
    app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=db_url, WTF_CSRF_ENABLED=False)
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    recovery = Recovery(app, db=db)
    now = datetime.now(UTC).replace(microsecond=0)
    bookings = {
        "b1": Booking(
            "b1",
            "c1",
            "Anna",
            "anna@client.test",
            now - timedelta(days=8),
            now - timedelta(days=8, hours=-1),
            "s-master",
            "Haircut",
            price=150000,
            status="completed",
        ),
        "b2": Booking(  # the next visit: the flag of the first one is for it
            "b2",
            "c1",
            "Anna",
            "anna@client.test",
            now + timedelta(hours=1),
            now + timedelta(hours=2),
            "s-master",
            "Haircut",
            price=150000,
            status="booked",
        ),
    }
    recovery.booking_loader(bookings.get)
    recovery.staff_loader(lambda: ADMIN)
    with app.app_context():
        recovery.drop_all()
        recovery.create_all()
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        # a case on the first visit, committed: its flag waits for the next visit (b2)
        incident = domain.record_incident(
            db.session, bookings["b1"], ADMIN, category="late", severity="major", description="25 minutes late"
        )
        compensation, _ = domain.grant_compensation(
            db.session, incident.id, recovery.load_booking, ADMIN, kind="discount", amount=20000
        )
        app.voucher = compensation.voucher_code
        db.session.commit()
    app.db, app.recovery = db, recovery
    yield app
    with app.app_context():
        db.session.remove()
        recovery.drop_all()
        Base.metadata.drop_all(db.engine)
        db.engine.dispose()


def counts(app) -> dict[str, int]:
    """What a fresh connection sees (committed rows only)."""
    with app.app_context():
        session = app.db.session
        flags = session.execute(sa.select(Flag.status)).scalars().all()
        state = {
            "payments": session.scalar(sa.select(sa.func.count()).select_from(Payment)),
            "used_flags": flags.count("used"),
            "visits": session.scalar(sa.select(sa.func.count()).select_from(Visit)),
            "redeemed": session.scalar(
                sa.select(sa.func.count()).select_from(Compensation).where(Compensation.redeemed_at.is_not(None))
            ),
            "erasures": session.scalar(sa.select(sa.func.count()).select_from(Erasure)),
            "audit": session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)),
        }
        session.remove()
    return state


HOST_CALLS = {
    "visit_completed": (lambda r: r.visit_completed("b2"), {"used_flags": 1, "visits": 0}),
    "booking_created": (lambda r: r.booking_created("b2"), {"visits": 1}),
    "redeem_voucher": (None, {"redeemed": 1}),
    "forget_client": (lambda r: r.forget_client("c1"), {"erasures": 1}),
}


@pytest.mark.parametrize("call", sorted(HOST_CALLS))
@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_the_hosts_commit_keeps_both_and_its_rollback_undoes_both(host_app, call, outcome):
    before = counts(host_app)
    action, changes = HOST_CALLS[call]
    with host_app.app_context():
        session = host_app.db.session
        session.add(Payment(booking_id="b2", amount=130000))  # the host's own pending work
        if call == "redeem_voucher":
            host_app.recovery.redeem_voucher(host_app.voucher, "b2")
        else:
            action(host_app.recovery)
        # nothing is durable yet: another connection sees the database as it was
        assert counts(host_app) == before
        if outcome == "commit":
            session.commit()
        else:
            session.rollback()
        session.remove()
    after = counts(host_app)
    if outcome == "rollback":
        assert after == before
    else:
        assert after["payments"] == before["payments"] + 1
        for name, delta in changes.items():
            if name == "visits" and call == "visit_completed":
                continue  # b2 may be new or known; the flag is what counts
            assert after[name] == before[name] + delta, (name, before, after)
        assert after["audit"] > before["audit"] or call == "booking_created"


def test_a_refused_voucher_leaves_the_hosts_pending_work_alone(host_app):
    """A rule that refuses never rolls back what the host has pending."""
    from flask_recovery.domain.compensations import VoucherError

    with host_app.app_context():
        session = host_app.db.session
        host_app.recovery.redeem_voucher(host_app.voucher, "b2")
        session.add(Payment(booking_id="b2", amount=1))
        with pytest.raises(VoucherError):
            host_app.recovery.redeem_voucher(host_app.voucher, "b2")  # used already
        session.commit()
        session.remove()
    assert counts(host_app)["payments"] == 1 and counts(host_app)["redeemed"] == 1


def test_the_extensions_own_api_commits_its_work(host_app):
    client = host_app.test_client()
    response = client.post(
        "/recovery/api/bookings/b2/incidents", json={"category": "result", "severity": "minor", "description": "uneven"}
    )
    assert response.status_code == 201, response.get_json()
    with host_app.app_context():
        assert host_app.db.session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 2
        host_app.db.session.remove()
    refused = client.post(f"/recovery/api/incidents/{response.get_json()['id']}/compensations", json={"kind": "redo"})
    assert refused.status_code in (201, 422)
    # a refusal (conduct case) is an answer below 500: its audit line is committed
    conduct = client.post(
        "/recovery/api/bookings/b2/incidents",
        json={"category": "client_conduct", "severity": "major", "description": "shouted"},
    ).get_json()["id"]
    assert (
        client.post(
            f"/recovery/api/incidents/{conduct}/compensations", json={"kind": "gift", "amount": 100}
        ).status_code
        == 409
    )
    with host_app.app_context():
        refusals = host_app.db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == "compensation.refused")
        )
        host_app.db.session.remove()
    assert refusals == 1


def test_a_booking_the_host_reports_completed_uses_up_its_flags(host_app):
    """A host without a checkout step: the visit the loader reports ``completed`` takes the
    flag, and the client's bookings after it no longer show it."""
    from dataclasses import replace

    recovery = host_app.recovery
    with host_app.app_context():
        b2 = recovery.load_booking("b2")
        later = replace(b2, id="b3", starts_at=b2.starts_at + timedelta(days=7), ends_at=b2.ends_at + timedelta(days=7))
        before = recovery.flags_for_bookings([b2, later])
        assert [f.type for f in before["b2"]] == ["vip"] and [f.type for f in before["b3"]] == ["vip"]
        done = replace(b2, status="completed")
        after = recovery.flags_for_bookings([done, later])
        assert [f.type for f in after["b2"]] == ["vip"]  # the visit it was for keeps it
        assert after["b3"] == []  # used up: not on her next booking
        host_app.db.session.commit()  # the host's commit keeps the use-up
        host_app.db.session.remove()
    with host_app.app_context():
        flag = host_app.db.session.scalars(sa.select(Flag)).one()
        assert (flag.status, flag.used_booking_id) == ("used", "b2")
        assert recovery.flags_for_bookings([later])["b3"] == []
        host_app.db.session.remove()

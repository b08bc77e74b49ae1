"""The audit trail is append-only in the database itself, and only committed actions leave a line.

``tests/test_migrations.py`` proves UPDATE and DELETE are refused for tables made by
``create_all`` and by the migrations, and that a failed incident leaves no line. Here: the
ORM cannot slip text into a line either, nobody empties the table (TRUNCATE on PostgreSQL), forget-client leaves
the trail as it was, and a refused or failed grant leaves exactly its refusal line.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_recovery import domain
from flask_recovery.domain import privacy
from flask_recovery.models import AuditEntry, Compensation


@pytest.fixture
def case(session, host):
    booking = host.add_booking("b1")
    admin = host.STAFF["admin"]
    incident = domain.record_incident(session, booking, admin, category="late", severity="major", description="late")
    session.commit()  # the host's commit: the rules only flush
    return booking, admin, incident


def test_the_orm_cannot_change_or_delete_a_line(session, case):
    recorded = sa.select(AuditEntry).where(AuditEntry.action == "incident.recorded")
    entry = session.scalars(recorded).one()
    entry.data = {"note": "Anna Smirnova said something"}
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        session.commit()
    session.rollback()
    session.delete(session.scalars(recorded).one())
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        session.commit()
    session.rollback()
    session.expire_all()
    assert session.scalars(recorded).one().data == {
        "category": "late",
        "severity": "major",
        "conduct": False,
    }


def test_emptying_the_table_is_refused(app, session, case):
    """PostgreSQL's TRUNCATE; SQLite has none, its truncate optimisation is DELETE without WHERE."""
    statement = "TRUNCATE recovery_audit_log"
    if session.get_bind().dialect.name == "sqlite":
        statement = "DELETE FROM recovery_audit_log"
    lines = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        session.execute(sa.text(statement))
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == lines > 0


def test_forget_client_leaves_the_trail_as_it_was_and_adds_one_line(session, case):
    before = session.execute(sa.select(AuditEntry.id, AuditEntry.action, AuditEntry.data).order_by(AuditEntry.id)).all()
    privacy.forget_client(session, "c1")
    after = session.execute(sa.select(AuditEntry.id, AuditEntry.action, AuditEntry.data).order_by(AuditEntry.id)).all()
    assert after[: len(before)] == before
    assert [row.action for row in after[len(before) :]] == ["client.erased"]


def test_a_failed_grant_leaves_no_line_and_a_refused_one_leaves_its_refusal(app, session, host, case, monkeypatch):
    booking, admin, incident = case
    lines = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))

    def broken(*args, **kwargs):
        raise RuntimeError("the mail outbox is full")

    from flask_recovery.domain import compensations

    monkeypatch.setattr(compensations.signals, "send_robust", lambda *a, **k: None)
    original_add = session.add

    def add(obj, *args, **kwargs):
        if isinstance(obj, AuditEntry):
            broken()
        return original_add(obj, *args, **kwargs)

    monkeypatch.setattr(session, "add", add)
    with pytest.raises(RuntimeError):
        domain.grant_compensation(session, incident.id, app.recovery.load_booking, admin, kind="gift", amount=1000)
    session.rollback()
    monkeypatch.undo()
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == lines
    assert session.scalar(sa.select(sa.func.count()).select_from(Compensation)) == 0

    conduct = domain.record_incident(session, booking, admin, severity="major", conduct=True, description="shouted")
    lines = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    with pytest.raises(domain.ConductCase):
        domain.grant_compensation(session, conduct.id, app.recovery.load_booking, admin, kind="gift", amount=1000)
    refusal = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == lines + 1
    assert (refusal.action, refusal.data) == ("compensation.refused", {"reason": "conduct_case"})


@pytest.mark.parametrize("verb", ["REPLACE INTO", "INSERT OR REPLACE INTO"])
def test_sqlite_cannot_rewrite_a_line_by_replacing_it(session, case, verb):
    """SQLite's REPLACE deletes the old line without firing a DELETE trigger; the insert guard refuses it."""
    if session.get_bind().dialect.name != "sqlite":
        with pytest.raises(sa.exc.DatabaseError):  # PostgreSQL has no REPLACE at all
            session.execute(sa.text(f"{verb} recovery_audit_log (id) VALUES (1)"))
        session.rollback()
        return
    entry = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).first()
    columns = [c.name for c in AuditEntry.__table__.columns]
    row = session.execute(sa.select(AuditEntry.__table__).where(AuditEntry.id == entry.id)).mappings().one()
    forged = dict(row, action="incident.forged", data="{}", at=str(row["at"]))
    placeholders = ", ".join(f":{name}" for name in columns)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        session.execute(sa.text(f"{verb} recovery_audit_log ({', '.join(columns)}) VALUES ({placeholders})"), forged)
    session.rollback()
    session.expire_all()
    assert session.get(AuditEntry, entry.id).action == entry.action

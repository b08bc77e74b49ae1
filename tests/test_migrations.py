"""The Alembic branch creates exactly what the models declare; the audit trail is append-only."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flask_recovery import migrate
from flask_recovery.models import AuditEntry, metadata


def _diff(engine):
    def include_name(name, type_, parent_names):
        return type_ != "table" or (name.startswith("recovery_") and name != migrate.VERSION_TABLE)

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True, "include_name": include_name}
        )
        return compare_metadata(context, metadata)


@pytest.fixture
def empty_engine(app):
    """The test's database with none of the extension's tables."""
    with app.app_context():
        app.recovery.drop_all()
        engine = app.db.engine
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {migrate.VERSION_TABLE}"))
    yield engine
    with app.app_context():
        app.db.session.remove()
        if migrate.current_revision(engine):
            migrate.downgrade(engine)


def test_upgrade_of_an_empty_database_matches_the_models(empty_engine):
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert _diff(empty_engine) == []
    tables = set(sa.inspect(empty_engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables


def test_downgrade_removes_every_table(empty_engine):
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine)
    left = {t for t in sa.inspect(empty_engine).get_table_names() if t.startswith("recovery_")}
    assert left <= {migrate.VERSION_TABLE}


def test_init_db_command_creates_then_does_nothing(app, empty_engine):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["recovery", "init-db"])
    assert first.exit_code == 0, first.output
    assert f"upgraded from empty to {migrate.head_revision()}" in first.output
    second = runner.invoke(args=["recovery", "init-db"])
    assert second.exit_code == 0 and "nothing to do" in second.output
    assert _diff(empty_engine) == []
    bad = runner.invoke(args=["recovery", "init-db", "--revision", "no_such_rev"])
    assert bad.exit_code != 0 and "no_such_rev" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("how", ["create_all", "migrations"])
def test_audit_trail_refuses_update_and_delete(app, empty_engine, host, how):
    if how == "create_all":
        metadata.create_all(empty_engine)
    else:
        migrate.upgrade(empty_engine)
    host.add_booking("b1")
    host.login("admin")
    client = app.test_client()
    assert (
        client.post(
            "/recovery/api/bookings/b1/incidents", json={"category": "late", "severity": "minor", "description": "late"}
        ).status_code
        == 201
    )
    # recording an incident writes two lines: incident.recorded and flag.set
    with empty_engine.connect() as connection:
        assert (
            connection.scalar(sa.select(sa.func.count()).select_from(AuditEntry.__table__)) == 2
        )  # incident.recorded and flag.set
    for statement in (
        "UPDATE recovery_audit_log SET action = 'forged'",
        "DELETE FROM recovery_audit_log",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with empty_engine.begin() as connection:
                connection.execute(sa.text(statement))
    with empty_engine.connect() as connection:
        assert set(connection.scalars(sa.text("SELECT action FROM recovery_audit_log"))) == {
            "incident.recorded",
            "flag.set",
        }
    if how == "create_all":
        with app.app_context():
            app.db.session.remove()
        metadata.drop_all(empty_engine)


def test_a_rolled_back_action_leaves_no_audit_row(app, host, session):
    """The audit entry is written in the action's transaction: a rollback leaves neither."""
    from flask_recovery import domain
    from flask_recovery.models import Incident

    host.add_booking("b1")
    staff = host.login("admin")
    domain.record_incident(session, host.bookings["b1"], staff, category="late", severity="minor", description="late")
    assert session.query(AuditEntry).count() == 2  # flushed in the caller's transaction ...
    session.rollback()  # ... which the caller rolls back
    assert session.query(Incident).count() == 0
    assert session.query(AuditEntry).count() == 0


def test_upgrade_to_0005_fills_the_next_visit_columns(empty_engine):
    """Visits and incidents recorded before 0005 get their next visits computed by the upgrade."""
    migrate.upgrade(empty_engine, "0004_flags_visits")
    visits = [  # booking, client, location, starts, ends, status
        ("v1", "c1", "north", "2026-01-10 10:00:00", "2026-01-10 11:00:00", "completed"),
        ("v2", "c1", "south", "2026-01-20 10:00:00", "2026-01-20 11:00:00", "cancelled"),
        ("v3", "c1", "south", "2026-02-01 10:00:00", "2026-02-01 11:00:00", "completed"),
        ("v4", "c1", "north", "2026-03-01 10:00:00", "2026-03-01 11:00:00", "booked"),
        ("v5", "c2", "north", "2026-01-10 10:00:00", "2026-01-10 11:00:00", "completed"),
    ]
    with empty_engine.begin() as connection:
        for booking, client, location, starts, ends, status in visits:
            connection.execute(
                sa.text(
                    "INSERT INTO recovery_visits (booking_id, client_id, location, starts_at, ends_at, status, "
                    "created_at) VALUES (:b, :c, :l, :s, :e, :st, :s)"
                ),
                {"b": booking, "c": client, "l": location, "s": starts + "+00:00", "e": ends + "+00:00", "st": status},
            )
        connection.execute(
            sa.text(
                "INSERT INTO recovery_incidents (booking_id, client_id, location, category, severity, conduct, "
                "description, status, recorded_by, visit_started_at, visit_ended_at, recorded_at, reopen_count) "
                "VALUES ('v1', 'c1', 'north', 'late', 'minor', :f, '', 'open', 's1', :s, :e, :e, 0)"
            ),
            {"f": False, "s": "2026-01-10 10:00:00+00:00", "e": "2026-01-10 11:00:00+00:00"},
        )
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT booking_id, next_visit_at, next_visit_here_at, previous_end_at, previous_here_end_at "
                "FROM recovery_visits ORDER BY booking_id"
            )
        ).all()
        incident = connection.execute(sa.text("SELECT next_visit_at, next_visit_here_at FROM recovery_incidents")).one()

    def day(value):
        return None if value is None else str(value)[:10]

    assert [(b, day(n), day(h)) for b, n, h, _, _ in rows] == [
        ("v1", "2026-02-01", "2026-03-01"),  # the cancelled visit does not count; v3 is elsewhere
        ("v2", "2026-02-01", "2026-02-01"),
        ("v3", "2026-03-01", None),
        ("v4", None, None),
        ("v5", None, None),
    ]
    # the completed visit before each one (v2 is cancelled, v4 only booked)
    assert [(b, day(p), day(ph)) for b, _, _, p, ph in rows] == [
        ("v1", None, None),
        ("v2", "2026-01-10", None),
        ("v3", "2026-01-10", None),
        ("v4", "2026-02-01", "2026-01-10"),
        ("v5", None, None),
    ]
    assert (day(incident[0]), day(incident[1])) == ("2026-02-01", "2026-03-01")

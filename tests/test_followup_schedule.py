"""When the check-in is due: delay, the local sending window, daylight-saving changes, skips."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flask_recovery import domain
from flask_recovery.followups import in_window, plan_followups
from flask_recovery.models import Erasure, FollowUp, utcnow

BERLIN = "Europe/Berlin"


def local(text, tz=BERLIN):
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-06-10 14:00", "2026-06-10 14:00"),  # inside: unchanged
        ("2026-06-10 07:30", "2026-06-10 10:00"),  # before opening: same morning
        ("2026-06-10 20:00", "2026-06-11 10:00"),  # at closing: next morning
        ("2026-06-10 23:59", "2026-06-11 10:00"),
        ("2026-03-28 22:00", "2026-03-29 10:00"),  # the night clocks go forward (CET -> CEST)
        ("2026-10-24 21:00", "2026-10-25 10:00"),  # the night clocks go back (CEST -> CET)
    ],
)
def test_moved_into_the_local_window(moment, expected):
    result = in_window(local(moment).astimezone(UTC), BERLIN, (10, 20))
    assert result.astimezone(ZoneInfo(BERLIN)).replace(tzinfo=None) == datetime.fromisoformat(expected)
    assert result.tzinfo is not None


def test_daylight_saving_keeps_the_local_hour_not_the_utc_hour():
    forward = in_window(local("2026-03-28 21:00").astimezone(UTC), BERLIN, (10, 20))
    back = in_window(local("2026-10-24 21:00").astimezone(UTC), BERLIN, (10, 20))
    assert forward == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert back == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 10:00 CET


def test_any_time_window():
    moment = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    assert in_window(moment, BERLIN, (0, 24)) == moment


def _resolved_case(app, host, session, booking_id="b1", **booking):
    b = host.add_booking(booking_id, **booking)
    staff = host.login("admin")
    incident = domain.record_incident(
        session,
        b,
        staff,
        category="late",
        severity="major",
        description="late",
        corrective_action="We keep a buffer between long services now",
    )
    domain.resolve_incident(session, incident.id, staff)
    return incident


@pytest.mark.config(RECOVERY_TIMEZONE=BERLIN, RECOVERY_FOLLOWUP_DELAY=timedelta(hours=24))
def test_a_resolved_case_is_planned_once_a_day_later_in_the_window(app, host, session):
    with app.app_context():
        incident = _resolved_case(app, host, session)
        assert plan_followups(session) == 1
        assert plan_followups(session) == 0
        row = session.query(FollowUp).one()
        assert (row.kind, row.status, row.incident_id) == ("checkin", "scheduled", incident.id)
        assert row.email == "anna@client.test" and row.client_name == "Anna Smirnova" and row.locale == "ru"
        earliest = incident.resolved_at + timedelta(hours=24)
        assert earliest <= row.due_at <= earliest + timedelta(hours=15)
        assert 10 <= row.due_at.astimezone(ZoneInfo(BERLIN)).hour < 20


@pytest.mark.parametrize(("status", "reason"), [("cancelled", "visit cancelled"), ("no_show", "visit no_show")])
def test_no_check_in_after_a_visit_that_did_not_take_place(app, host, session, status, reason):
    with app.app_context():
        _resolved_case(app, host, session, status=status)
        plan_followups(session)
        row = session.query(FollowUp).one()
        assert row.status == "cancelled" and row.last_error == reason and row.email is None


def test_conduct_cases_get_no_check_in(app, host, session):
    with app.app_context():
        b = host.add_booking("b1")
        staff = host.login("admin")
        incident = domain.record_incident(
            session, b, staff, category="client_conduct", severity="major", description="abuse"
        )
        domain.resolve_incident(session, incident.id, staff)
        assert plan_followups(session) == 0


def test_an_open_case_waits_for_its_resolution(app, host, session):
    with app.app_context():
        b = host.add_booking("b1")
        domain.record_incident(session, b, host.login("admin"), category="late", severity="minor", description="x")
        assert plan_followups(session) == 0


@pytest.mark.config(RECOVERY_FOLLOWUP_MIN_INTERVAL=timedelta(days=30))
def test_one_check_in_per_client_within_the_interval(app, host, session):
    with app.app_context():
        _resolved_case(app, host, session, "b1")
        _resolved_case(app, host, session, "b2")
        plan_followups(session)
        rows = {r.booking_id: r for r in session.query(FollowUp)}
        assert rows["b1"].status == "scheduled"
        assert rows["b2"].status == "cancelled" and "MIN_INTERVAL" in rows["b2"].last_error


# -- erased clients (forget-client) ------------------------------------------------------------


def _erase(session, client_id):
    session.add(Erasure(client_id=client_id, erased_at=utcnow()))
    session.commit()


def test_nothing_is_planned_for_an_erased_client(app, host, session):
    with app.app_context():
        _erase(session, "c-erased")
        _resolved_case(app, host, session, "b1", client_id="c-erased", client_email="gone@client.test")
        _resolved_case(app, host, session, "b2", client_id="c-kept", client_email="kept@client.test")
        assert plan_followups(session) == 1
        assert plan_followups(session) == 0
        rows = session.query(FollowUp).all()
        # not even a cancelled row: nothing about her is written again
        assert [(r.booking_id, r.client_id, r.status) for r in rows] == [("b2", "c-kept", "scheduled")]


@pytest.mark.config(RECOVERY_FOLLOWUP_ALL_VISITS=True, RECOVERY_FOLLOWUP_DELAY=timedelta(0))
def test_no_check_in_after_an_ordinary_visit_of_an_erased_client(app, host, session):
    with app.app_context():
        host.add_booking("v1", client_id="c-erased", client_email="gone@client.test")
        host.add_booking("v2", client_id="c-kept", client_email="kept@client.test")
        app.recovery.bookings_between(
            lambda start, end: [b for b in host.bookings.values() if start <= b.ends_at < end]
        )
        _erase(session, "c-erased")
        assert plan_followups(session) == 1
        assert [(r.booking_id, r.client_id) for r in session.query(FollowUp)] == [("v2", "c-kept")]


@pytest.mark.config(RECOVERY_FOLLOWUP_REMINDER_AFTER=timedelta(days=3), RECOVERY_FOLLOWUP_DELAY=timedelta(0))
def test_no_reminder_for_a_client_erased_after_her_check_in(app, host, session):
    with app.app_context():
        _resolved_case(app, host, session, "b1", client_id="c-erased", client_email="gone@client.test")
        _resolved_case(app, host, session, "b2", client_id="c-kept", client_email="kept@client.test")
        plan_followups(session)
        sent_at = utcnow() - timedelta(days=4)
        for row in session.query(FollowUp):
            row.status, row.sent_at = "sent", sent_at
        session.commit()
        _erase(session, "c-erased")
        assert plan_followups(session) == 1
        reminders = session.query(FollowUp).filter_by(kind="reminder").all()
        assert [(r.booking_id, r.status) for r in reminders] == [("b2", "scheduled")]


@pytest.mark.config(RECOVERY_FOLLOWUP_ALL_VISITS=True, RECOVERY_FOLLOWUP_DELAY=timedelta(0))
def test_every_visit_is_planned_once_and_a_rerun_costs_the_same_queries_for_5_or_60_visits(app, host, session):
    from sqlalchemy import event

    statements = []
    with app.app_context():
        app.recovery.bookings_between(
            lambda start, end: [b for b in host.bookings.values() if start <= b.ends_at < end]
        )
        event.listen(app.db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        staff = host.login("admin")
        rerun = {}
        for visits in (5, 60):
            for n in range(len(host.bookings), visits):
                host.add_booking(f"v{n}", client_id=f"c{n}", client_email=f"c{n}@client.test")
            if visits == 5:  # a visit with a case waits for it; a conduct case gets nothing
                domain.record_incident(session, host.bookings["v0"], staff, category="late", severity="minor",
                                       description="late")  # fmt: skip
                domain.record_incident(session, host.bookings["v1"], staff, category="client_conduct",
                                       severity="major", description="abuse")  # fmt: skip
            planned = plan_followups(session)
            assert planned == (3 if visits == 5 else 55)
            statements.clear()
            assert plan_followups(session) == 0
            rerun[visits] = len(statements)
        assert rerun[5] == rerun[60]
        rows = session.query(FollowUp).all()
        assert len(rows) == 58 and {r.booking_id for r in rows}.isdisjoint({"v0", "v1"})

"""The KPI journal's figures against a fixture computed by hand.

The salon runs on Moscow time (UTC+3, no daylight saving). The period is March and April
2026 (local dates), so the journal starts at 2026-02-28 21:00 UTC and ends before
2026-04-30 21:00 UTC. Some incidents sit right at the edges, where UTC and Moscow
disagree about the day, the week and the month. "Now" is 2026-08-15 12:00 UTC, so every
30/60/90-day return window of the period has passed.

Incidents (visit end -> recorded -> resolved, UTC; minutes to recognition / resolution):

====  ======  ====================  ========  ===================  ==========  ========
id    client  category              location  recorded (Moscow)    rec / res   status
====  ======  ====================  ========  ===================  ==========  ========
I1    c1      late                  center    Sun 1 Mar 10:10      10 / 60     resolved
I2    c2      result                center    Tue 10 Mar 13:30     30 / 1440   closed
I3    c3      late                  north     Wed 1 Apr 00:30 (*)  90 / 240    resolved
I4    c4      result                north     Mon 6 Apr 00:30 (+)  270 / -     reopened
I5    c5      client_conduct        center    Fri 10 Apr 12:05     (left out)  resolved
I6    c1      communication         center    Mon 20 Apr 11:00     0 / -       open
I7    c6      billing (erased)      center    Tue 28 Apr 15:20     20 / 120    closed
I8    c7      late                  center    Sat 28 Feb 23:59     outside the period
I9    c8      late                  center    Fri 1 May 00:00      outside the period
I10   c9      hygiene               center    now - 2 h            open (August)
I11   c9      hygiene               north     now - 2 days         open (August)
I12   c10     other                 center    now - 5 days         reopened (August)
====  ======  ====================  ========  ===================  ==========  ========

(*) 31 March 21:30 UTC: April in Moscow. (+) Sunday 5 April 21:30 UTC: Monday's week in Moscow.

Recognition minutes sorted: 0 10 20 30 90 270 -> median 25, p90 at position 4.5 -> 180.
Resolution (resolved or closed only) 60 120 240 1440 -> median 180, p90 at 2.7 -> 1080.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from flask_babel import force_locale

from flask_recovery import Booking, Staff
from flask_recovery.domain import flags, stats
from flask_recovery.domain.compensations import grant_compensation
from flask_recovery.errors import InvalidInput, NotFound
from flask_recovery.models import Compensation, FollowUp, Incident, Visit

MOSCOW = {"RECOVERY_TIMEZONE": "Europe/Moscow", "RECOVERY_MONTHLY_BUDGET": 100_000}
NOW = datetime(2026, 8, 15, 12, 0, tzinfo=UTC)
MANAGER = Staff(id="s-manager", name="Marina", role="manager")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def incident(session, ident, client, category, location, ended, recorded, *, resolved=None, status="open", **extra):
    row = Incident(
        booking_id=f"b{ident}",
        client_id=client,
        location=location,
        category=category,
        severity="major",
        conduct=category == "client_conduct",
        description=f"what happened to {client} #{ident}",
        corrective_action="what will change",
        status=status,
        recorded_by="s-admin",
        recorded_by_name="Irina",
        staff_id="s-master",
        visit_started_at=ended - timedelta(hours=1),
        visit_ended_at=ended,
        recorded_at=recorded,
        resolved_at=resolved,
        closed_at=resolved if status == "closed" else None,
        reopen_count=1 if status == "reopened" else 0,
        **extra,
    )
    session.add(row)
    session.flush()
    return row


def visit(session, booking_id, client, location, starts, status="completed"):
    """The visit as the host reports it (``booking_created`` / ``visit_completed`` write it so)."""
    booking = Booking(id=booking_id, client_id=client, client_name=f"Client {client}", client_email=None,
                      starts_at=starts, ends_at=starts + timedelta(hours=1), staff_id="s-master", service="Cut",
                      status=status, location=location)  # fmt: skip
    flags.upsert_visit(session, booking)


def compensation(session, inc, amount, status, month, location):
    session.add(
        Compensation(
            incident_id=inc.id,
            booking_id=inc.booking_id,
            client_id=inc.client_id,
            location=location,
            kind="gift",
            amount=amount,
            currency="EUR",
            status=status,
            note="a note about her",
            requested_by="s-manager",
            requested_by_role="manager",
            requested_by_name="Marina",
            created_at=inc.recorded_at + timedelta(minutes=5),
            decided_at=inc.recorded_at + timedelta(minutes=5) if status != "pending_approval" else None,
            charged_to="s-manager" if status == "granted" else None,
            charged_month=month if status == "granted" else None,
        )
    )


def followup(session, booking_id, client, inc, location, kind, sent, answer=None, status="sent"):
    session.add(
        FollowUp(
            booking_id=booking_id,
            client_id=client,
            incident_id=inc.id if inc is not None else None,
            location=location,
            kind=kind,
            status=status,
            due_at=sent or utc(2026, 4, 30, 9),
            locale="ru",
            email=f"{client}@client.test",
            client_name=f"Client {client}",
            sent_at=sent,
            answer=answer,
            answered_at=sent + timedelta(hours=3) if answer else None,
            comment="she wrote something" if answer else None,
        )
    )


def build_fixture(app, host) -> dict[str, Incident]:
    """The hand-computed salon (see the module docstring). Returns the incidents by name."""
    session = app.db.session
    i = {}
    i["I1"] = incident(session, 1, "c1", "late", "center", utc(2026, 3, 1, 7), utc(2026, 3, 1, 7, 10),
                       resolved=utc(2026, 3, 1, 8), status="resolved")  # fmt: skip
    i["I2"] = incident(session, 2, "c2", "result", "center", utc(2026, 3, 10, 10), utc(2026, 3, 10, 10, 30),
                       resolved=utc(2026, 3, 11, 10), status="closed")  # fmt: skip
    i["I3"] = incident(session, 3, "c3", "late", "north", utc(2026, 3, 31, 20), utc(2026, 3, 31, 21, 30),
                       resolved=utc(2026, 4, 1, 0), status="resolved")  # fmt: skip
    i["I4"] = incident(session, 4, "c4", "result", "north", utc(2026, 4, 5, 17), utc(2026, 4, 5, 21, 30),
                       resolved=utc(2026, 4, 6, 9), status="reopened")  # fmt: skip
    i["I5"] = incident(session, 5, "c5", "client_conduct", "center", utc(2026, 4, 10, 9), utc(2026, 4, 10, 9, 5),
                       resolved=utc(2026, 4, 10, 10), status="resolved")  # fmt: skip
    i["I6"] = incident(session, 6, "c1", "communication", "center", utc(2026, 4, 20, 8), utc(2026, 4, 20, 8))
    i["I7"] = incident(session, 7, "c6", "billing", "center", utc(2026, 4, 28, 12), utc(2026, 4, 28, 12, 20),
                       resolved=utc(2026, 4, 28, 14), status="closed")  # fmt: skip
    i["I8"] = incident(session, 8, "c7", "late", "center", utc(2026, 2, 28, 19), utc(2026, 2, 28, 20, 59),
                       resolved=utc(2026, 3, 1, 9), status="resolved")  # fmt: skip
    i["I9"] = incident(session, 9, "c8", "late", "center", utc(2026, 4, 30, 20), utc(2026, 4, 30, 21))
    i["I10"] = incident(session, 10, "c9", "hygiene", "center", NOW - timedelta(hours=3), NOW - timedelta(hours=2))
    i["I11"] = incident(
        session, 11, "c9", "hygiene", "north", NOW - timedelta(days=2, hours=1), NOW - timedelta(days=2)
    )
    i["I12"] = incident(session, 12, "c10", "other", "center", NOW - timedelta(days=5, hours=1),
                        NOW - timedelta(days=5), resolved=NOW - timedelta(days=4), status="reopened")  # fmt: skip

    # Compensations: March 30000 + 50000 = 80000 (plan 100000); April 40000 + 90000 = 130000.
    compensation(session, i["I1"], 30_000, "granted", "2026-03", "center")
    compensation(session, i["I2"], 50_000, "granted", "2026-03", "center")
    compensation(session, i["I4"], 90_000, "granted", "2026-04", "north")
    compensation(session, i["I7"], 20_000, "pending_approval", None, "center")
    compensation(session, i["I7"], 10_000, "rejected", None, "center")
    compensation(session, i["I8"], 70_000, "granted", "2026-02", "center")

    # Check-ins sent in the period: 5; answered 4 (one by its reminder); all good 3.
    followup(session, "b1", "c1", i["I1"], "center", "checkin", utc(2026, 3, 2, 9), "good")
    followup(session, "b2", "c2", i["I2"], "center", "checkin", utc(2026, 3, 12, 9))
    followup(session, "b2", "c2", i["I2"], "center", "reminder", utc(2026, 3, 15, 9), "not_right")
    followup(session, "b3", "c3", i["I3"], "north", "checkin", utc(2026, 4, 2, 9))
    followup(session, "b3", "c3", i["I3"], "north", "reminder", utc(2026, 4, 5, 9))
    followup(session, "b7", "c6", i["I7"], "center", "checkin", utc(2026, 4, 29, 9), "good")
    followup(session, "b20", "c11", None, "center", "checkin", utc(2026, 4, 15, 9), "good")
    followup(session, "b9", "c8", i["I9"], "center", "checkin", utc(2026, 5, 2, 9), "good")  # after the period
    followup(session, "b21", "c12", None, "center", "checkin", None, status="scheduled")  # not sent

    # Visits (ids and times only).
    for booking_id, client, location, starts, status in [
        ("b1", "c1", "center", utc(2026, 3, 1, 6), "completed"),
        ("b2", "c2", "center", utc(2026, 3, 10, 9), "completed"),
        ("b3", "c3", "north", utc(2026, 3, 31, 19), "completed"),
        ("b4", "c4", "north", utc(2026, 4, 5, 16), "completed"),
        ("b5", "c5", "center", utc(2026, 4, 10, 8), "completed"),
        ("b6", "c1", "center", utc(2026, 4, 20, 7), "completed"),  # c1 again: 50 days after b1 ended
        ("b7", "c6", "center", utc(2026, 4, 28, 11), "completed"),
        ("b22", "c2", "center", utc(2026, 4, 9, 10), "completed"),  # exactly 30 days after b2 ended
        ("b23", "c3", "north", utc(2026, 4, 20, 10), "cancelled"),  # cancelled: not a return
        ("b24", "c3", "north", utc(2026, 7, 1, 10), "completed"),  # 91.6 days: too late
        ("b25", "c4", "north", utc(2026, 6, 20, 17), "booked"),  # 76 days
        ("b26", "c6", "center", utc(2026, 5, 10, 12), "completed"),  # 12 days
        ("b30", "c11", "center", utc(2026, 3, 5, 9), "completed"),
        ("b31", "c11", "center", utc(2026, 3, 20, 10), "completed"),  # 15 days
        ("b32", "c12", "north", utc(2026, 3, 15, 9), "completed"),  # never back
        ("b33", "c13", "center", utc(2026, 4, 10, 9), "completed"),
        ("b34", "c13", "center", utc(2026, 5, 20, 10), "no_show"),  # 40 days: booked again all the same
        ("b35", "c14", "center", utc(2026, 3, 20, 9), "cancelled"),  # no completed visit: not counted
        ("b36", "c7", "center", utc(2026, 3, 8, 9), "completed"),  # c7's incident was in February
        ("b37", "c7", "center", utc(2026, 3, 10, 9), "completed"),  # 2 days
        ("b38", "c5", "center", utc(2026, 3, 3, 9), "completed"),  # conduct client: in neither group
    ]:
        visit(session, booking_id, client, location, starts, status)
    session.commit()

    # The April 1st grant goes through the real rule: 31 March 21:30 UTC is April in Moscow.
    host.add_booking("b3", client_id="c3", location="north", price=150_000)
    grant_compensation(
        session,
        i["I3"].id,
        app.recovery.load_booking,
        MANAGER,
        kind="gift",
        amount=40_000,
        now=utc(2026, 3, 31, 21, 30),
    )
    return i


@pytest.fixture
def salon(app, host):
    with app.app_context():
        build_fixture(app, host)
    return app


def figures(app, since="2026-03-01", until="2026-04-30", now=NOW, **filters):
    with app.app_context(), force_locale("en"):
        period = stats.make_period(since, until, **filters)
        return stats.journal(app.db.session, period, now=now)


# -- incidents per week and per month -------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_incidents_per_local_week_and_month(salon):
    data = figures(salon)
    incidents = data["incidents"]
    assert data["period"] == {
        "since": "2026-03-01",
        "until": "2026-04-30",
        "timezone": "Europe/Moscow",
        "location": None,
        "category": None,
    }
    assert incidents["total"] == 7  # I8 (23:59 on 28 Feb) and I9 (00:00 on 1 May) are outside
    assert incidents["by_category"] == {"late": 2, "result": 2, "client_conduct": 1, "communication": 1, "billing": 1}
    assert incidents["categories"] == ["late", "result", "communication", "billing", "client_conduct"]
    weeks = {w["week"]: w["counts"] for w in incidents["weeks"]}
    assert list(weeks) == [
        "2026-02-23",
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
        "2026-03-23",
        "2026-03-30",
        "2026-04-06",
        "2026-04-13",
        "2026-04-20",
        "2026-04-27",
    ]
    assert weeks["2026-02-23"] == {"late": 1}  # Sunday 1 March
    assert weeks["2026-03-09"] == {"result": 1}
    assert weeks["2026-03-30"] == {"late": 1}  # I3 only: I4 is Monday 6 April in Moscow
    assert weeks["2026-04-06"] == {"result": 1, "client_conduct": 1}
    assert weeks["2026-04-20"] == {"communication": 1}
    assert weeks["2026-04-27"] == {"billing": 1}
    assert [w["total"] for w in incidents["weeks"]] == [1, 0, 1, 0, 0, 1, 2, 0, 1, 1]
    # I3 was recorded on 31 March in UTC but on 1 April in Moscow: April's.
    april = {"late": 1, "result": 1, "client_conduct": 1, "communication": 1, "billing": 1}
    assert incidents["months"] == [
        {"month": "2026-03", "counts": {"late": 1, "result": 1}, "total": 2},
        {"month": "2026-04", "counts": april, "total": 5},
    ]


@pytest.mark.config(RECOVERY_TIMEZONE="UTC")
def test_the_same_incidents_in_utc_fall_into_other_weeks_and_months(salon):
    data = figures(salon)
    incidents = data["incidents"]
    # In UTC, I8 (20:59 on 28 Feb) is outside and I9 (21:00 on 30 April) inside; I3 is March's.
    assert incidents["total"] == 8
    assert [m["total"] for m in incidents["months"]] == [3, 5]
    weeks = {w["week"]: w["counts"] for w in incidents["weeks"]}
    assert weeks["2026-03-30"] == {"late": 1, "result": 1}  # I3 and I4 (Sunday 5 April in UTC)
    assert weeks["2026-04-27"] == {"billing": 1, "late": 1}


# -- speed -----------------------------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_median_and_90th_percentile_minutes(salon):
    speed = figures(salon)["speed"]
    assert speed["recognition"] == {"cases": 6, "median_minutes": 25.0, "p90_minutes": 180.0}
    assert speed["resolution"] == {"cases": 4, "median_minutes": 180.0, "p90_minutes": 1080.0}


@pytest.mark.config(**MOSCOW)
def test_speed_for_one_location_and_for_conduct_cases(salon):
    north = figures(salon, location="north")["speed"]
    # I3 (90 / 240) and I4 (270, reopened): median of two = the mean, p90 = 90 + 0.9 * 180.
    assert north["recognition"] == {"cases": 2, "median_minutes": 180.0, "p90_minutes": 252.0}
    assert north["resolution"] == {"cases": 1, "median_minutes": 240.0, "p90_minutes": 240.0}
    conduct = figures(salon, category="client_conduct")["speed"]
    assert conduct["recognition"] == {"cases": 1, "median_minutes": 5.0, "p90_minutes": 5.0}
    assert conduct["resolution"] == {"cases": 1, "median_minutes": 60.0, "p90_minutes": 60.0}


# -- open cases ------------------------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_open_cases_by_age_are_a_snapshot_now(salon):
    open_cases = figures(salon)["open_cases"]
    assert open_cases["buckets"] == [
        {"bucket": "under_1_day", "cases": 1},  # I10
        {"bucket": "1_3_days", "cases": 1},  # I11
        {"bucket": "3_7_days", "cases": 1},  # I12 (reopened)
        {"bucket": "7_30_days", "cases": 0},
        {"bucket": "over_30_days", "cases": 3},  # I4 (reopened), I6, I9 (after the period: still open)
    ]
    assert open_cases["total"] == 6
    oldest = (NOW - utc(2026, 4, 5, 21, 30)).total_seconds() / 86400  # I4
    assert open_cases["oldest_days"] == round(oldest, 1)
    center = figures(salon, location="center")["open_cases"]
    assert [b["cases"] for b in center["buckets"]] == [1, 0, 1, 0, 2]


# -- spend ------------------------------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_spend_per_month_against_the_plan(salon):
    spend = figures(salon)["spend"]
    assert spend["budget"] == 100_000
    assert spend["months"] == [
        {"month": "2026-03", "grants": 2, "spent": 80_000, "budget": 100_000, "left": 20_000, "share": 0.8},
        {"month": "2026-04", "grants": 2, "spent": 130_000, "budget": 100_000, "left": -30_000, "share": 1.3},
    ]
    assert spend["total"] == 210_000


@pytest.mark.config(**MOSCOW)
def test_spend_by_location_and_category(salon):
    assert [m["spent"] for m in figures(salon, location="center")["spend"]["months"]] == [80_000, 0]
    assert [m["spent"] for m in figures(salon, location="north")["spend"]["months"]] == [0, 130_000]
    late = figures(salon, category="late")["spend"]["months"]
    assert [(m["grants"], m["spent"]) for m in late] == [(1, 30_000), (1, 40_000)]


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Moscow")
def test_no_plan_means_no_budget_figures(salon):
    spend = figures(salon)["spend"]
    assert spend["budget"] is None
    assert [(m["budget"], m["left"], m["share"]) for m in spend["months"]] == [(None, None, None)] * 2


# -- check-ins -------------------------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_check_in_answer_rate_and_share_of_all_good(salon):
    assert figures(salon)["followups"] == {
        "sent": 5,
        "answered": 4,
        "good": 3,
        "not_right": 1,
        "answer_rate": 0.8,
        "good_share": 0.75,
    }
    north = figures(salon, location="north")["followups"]
    assert (north["sent"], north["answered"], north["answer_rate"], north["good_share"]) == (1, 0, 0.0, None)
    late = figures(salon, category="late")["followups"]
    assert (late["sent"], late["answered"], late["good"]) == (2, 1, 1)


# -- return rates ------------------------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_return_rates_with_and_without_an_incident(salon):
    returns = figures(salon)["returns"]
    assert returns["visits_known"] == 17
    assert returns["windows"] == [30, 60, 90]
    # With an incident: c1 (50 days), c2 (exactly 30), c3 (never: cancelled, then 91.6 days),
    # c4 (76 days), c6 (12 days, erased later). c5's conduct case is left out.
    assert returns["with_incident"] == {
        "30": {"clients": 5, "returned": 2, "rate": 0.4},
        "60": {"clients": 5, "returned": 3, "rate": 0.6},
        "90": {"clients": 5, "returned": 4, "rate": 0.8},
    }
    # Without: c11 (15 days), c12 (never), c13 (40 days, a no-show booking), c7 (2 days).
    assert returns["without_incident"] == {
        "30": {"clients": 4, "returned": 2, "rate": 0.5},
        "60": {"clients": 4, "returned": 3, "rate": 0.75},
        "90": {"clients": 4, "returned": 3, "rate": 0.75},
    }


@pytest.mark.config(**MOSCOW)
def test_return_windows_count_only_once_they_have_passed(salon):
    returns = figures(salon, now=utc(2026, 5, 15, 12))["returns"]
    # 30 days passed for c1, c2, c3, c4 (not c6, 28 April); 60 days for c1 and c2; 90 for none.
    assert returns["with_incident"]["30"] == {"clients": 4, "returned": 1, "rate": 0.25}
    assert returns["with_incident"]["60"] == {"clients": 2, "returned": 2, "rate": 1.0}
    assert returns["with_incident"]["90"] == {"clients": 0, "returned": 0, "rate": None}


@pytest.mark.config(**MOSCOW)
def test_return_rates_for_one_location(salon):
    returns = figures(salon, location="center")["returns"]
    assert returns["with_incident"]["30"] == {"clients": 3, "returned": 2, "rate": 0.6667}
    assert returns["with_incident"]["60"] == {"clients": 3, "returned": 3, "rate": 1.0}
    assert returns["without_incident"]["30"] == {"clients": 3, "returned": 2, "rate": 0.6667}
    assert returns["without_incident"]["90"] == {"clients": 3, "returned": 3, "rate": 1.0}


# -- empty periods, erasure, validation -------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_an_empty_period_has_zeros_and_no_rates(salon):
    data = figures(salon, since="2025-06-01", until="2025-06-30")
    assert data["incidents"]["total"] == 0
    assert data["incidents"]["categories"] == []
    assert all(w["total"] == 0 for w in data["incidents"]["weeks"]) and len(data["incidents"]["weeks"]) == 6
    assert data["speed"]["recognition"] == {"cases": 0, "median_minutes": None, "p90_minutes": None}
    assert data["speed"]["resolution"] == {"cases": 0, "median_minutes": None, "p90_minutes": None}
    assert data["spend"]["months"] == [
        {"month": "2025-06", "grants": 0, "spent": 0, "budget": 100_000, "left": 100_000, "share": 0.0}
    ]
    assert data["followups"]["answer_rate"] is None and data["followups"]["sent"] == 0
    assert data["returns"]["visits_known"] == 0
    assert data["returns"]["with_incident"]["30"] == {"clients": 0, "returned": 0, "rate": None}
    assert data["open_cases"]["total"] == 6  # open cases are counted now, whatever the period


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Moscow")
def test_empty_database(app):
    data = figures(app)
    assert data["incidents"]["total"] == 0
    assert data["open_cases"] == {
        "total": 0,
        "buckets": [{"bucket": b, "cases": 0} for b, _d in stats.AGE_BUCKETS],
        "oldest_days": None,
    }
    assert data["speed"]["recognition"]["median_minutes"] is None


@pytest.mark.config(**MOSCOW)
def test_figures_are_the_same_after_a_client_is_erased(salon):
    def without_time(data):
        return {k: v for k, v in data.items() if k != "generated_at"}

    before = figures(salon)
    with salon.app_context():
        salon.recovery.forget_client("c6")
        salon.db.session.commit()  # the host's commit
        salon.db.session.remove()
    with salon.app_context():
        session = salon.db.session
        erased = session.query(Incident).filter_by(client_id="c6").one()
        assert erased.description != "what happened to c6 #7"  # the free text is gone ...
        assert session.query(FollowUp).filter_by(client_id="c6").one().email is None
        assert session.query(Visit).filter_by(client_id="c6").count() == 2  # ... the ids and times stay
    after = figures(salon)
    assert without_time(after) == without_time(before)
    assert after["returns"]["with_incident"]["30"]["returned"] == 2  # c6 is still one of them


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Moscow")
def test_default_period_is_the_last_90_local_days(app):
    with app.app_context():
        # 22:30 UTC on 31 March is already 1 April in Moscow.
        period = stats.make_period(now=utc(2026, 3, 31, 22, 30))
    assert (period.since, period.until) == (date(2026, 1, 2), date(2026, 4, 1))
    assert period.start == utc(2026, 1, 1, 21) and period.end == utc(2026, 4, 1, 21)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"since": "31.03.2026"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"since": "2026-04-02", "until": "2026-04-01"}, "since"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "until"),
        ({"since": "1999-12-31"}, "since"),
        ({"category": "nonsense"}, "category"),
        ({"location": "x" * 65}, "location"),
        ({"since": "2026-01-01\x00"}, "since"),
    ],
)
def test_bad_filters_name_their_field(app, args, field):
    with app.app_context(), pytest.raises(InvalidInput) as caught:
        stats.make_period(**args)
    assert caught.value.field == field


def test_a_manager_of_one_location_is_held_to_it(app):
    north = Staff(id="m2", name="Nadia", role="manager", location="north")
    with app.app_context():
        assert stats.make_period(staff=north).location == "north"
        assert stats.make_period(location="north", staff=north).location == "north"
        with pytest.raises(NotFound):
            stats.make_period(location="center", staff=north)


# -- sync from bookings_between ------------------------------------------------------------------------


def test_sync_visits_upserts_the_hosts_bookings(app, host):
    start = utc(2026, 3, 1)
    bookings = [
        Booking(
            id=f"h{n}",
            client_id=f"c{n % 3}",
            client_name="Someone",
            client_email="someone@client.test",
            starts_at=start + timedelta(days=n, hours=9),
            ends_at=start + timedelta(days=n, hours=10),
            staff_id="s-master",
            service="Haircut",
            status="completed" if n < 20 else "booked",
            location="center",
        )
        for n in range(30)
    ]
    calls = []

    def between(a, b):
        calls.append((a, b))
        return [x for x in bookings if a <= x.starts_at < b]

    with app.app_context():
        session = app.db.session
        session.add(Visit(booking_id="h5", client_id="c2", starts_at=start, status="completed", completed_at=start))
        session.commit()
        seen = stats.sync_visits(session, between, start, start + timedelta(days=30))
        assert seen == 30
        assert len(calls) == 5  # one loader call per week, never per booking
        assert session.query(Visit).count() == 30
        h5 = session.get(Visit, "h5")
        assert (h5.client_id, h5.starts_at, h5.completed_at) == ("c2", start + timedelta(days=5, hours=9), start)
        assert session.get(Visit, "h25").status == "booked"
        # Run again after the host changed a booking: updated, not duplicated.
        bookings[25] = Booking(**{**bookings[25].__dict__, "status": "cancelled"})
        stats.sync_visits(session, between, start, start + timedelta(days=30))
        session.expire_all()
        assert session.query(Visit).count() == 30
        assert session.get(Visit, "h25").status == "cancelled"


def test_csv_cells_cannot_start_a_formula():
    assert [stats.csv_cell(v) for v in ["=1+1", "+7", "-2", "@SUM(A1)", "\tx", "late", 5, -5, None]] == [
        "'=1+1",
        "'+7",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "late",
        5,
        -5,
        "",
    ]

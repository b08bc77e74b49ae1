"""Each visit and incident knows the client's next visit, whatever order the writes come in.

The journal's return rate reads ``next_visit_at`` / ``next_visit_here_at`` instead of
joining every later visit, so the columns must stay true after every kind of write:
new bookings, reschedules, cancellations, checkouts, a booking moved to another client,
incidents, and the ``bookings_between`` sync. Each check compares every row with the
definition computed in Python from the visits themselves.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from flask_recovery import Booking
from flask_recovery.domain import flags
from flask_recovery.models import Incident, Visit

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LOCATIONS = ("center", "north")
CLIENTS = ("c1", "c2", "c3")


def expected_next(visits, client, moment, location=None):
    """The start of the client's first visit (not cancelled) starting at ``moment`` or later."""
    starts = [
        v.starts_at
        for v in visits
        if v.client_id == client
        and v.status != "cancelled"
        and v.starts_at >= moment
        and (location is None or v.location == location)
    ]
    return min(starts, default=None)


def expected_previous(visits, visit, location=None):
    """The end of the client's completed visit just before ``visit`` (by end, then booking id)."""
    ends = [
        v.ends_at
        for v in visits
        if v.client_id == visit.client_id
        and v.status == "completed"
        and v.ends_at is not None
        and (v.ends_at, v.booking_id) < (visit.ends_at, visit.booking_id)
        and (location is None or v.location == location)
    ]
    return max(ends, default=None)


def assert_next_visits_true(session):
    session.expire_all()
    visits = session.query(Visit).all()
    wrong = []
    for v in visits:
        want = (None, None, None, None)
        if v.ends_at is not None:
            want = (
                expected_next(visits, v.client_id, v.ends_at),
                expected_next(visits, v.client_id, v.ends_at, v.location),
                expected_previous(visits, v),
                expected_previous(visits, v, v.location),
            )
        got = (v.next_visit_at, v.next_visit_here_at, v.previous_end_at, v.previous_here_end_at)
        if got != want:
            wrong.append(("visit", v.booking_id, got, want))
    for i in session.query(Incident).all():
        want = (
            expected_next(visits, i.client_id, i.visit_ended_at),
            expected_next(visits, i.client_id, i.visit_ended_at, i.location),
        )
        if (i.next_visit_at, i.next_visit_here_at) != want:
            wrong.append(("incident", i.id, i.next_visit_at, i.next_visit_here_at, want))
    assert wrong == []
    return len(visits)


def booking(booking_id, client, starts, location="center", status="booked"):
    return Booking(id=booking_id, client_id=client, client_name="Anna", client_email="anna@client.test",
                   starts_at=starts, ends_at=starts + timedelta(hours=1), staff_id="s-master", service="Cut",
                   price=150_000, status=status, location=location, locale="ru")  # fmt: skip


def test_random_writes_keep_every_next_visit_true(app, host, session):
    rnd = random.Random(2026)
    http = app.test_client()
    host.login("admin")
    made = 0
    recovery = app.recovery
    kinds = {"created": 0, "moved": 0, "cancelled": 0, "completed": 0, "other client": 0, "incident": 0, "sync": 0}
    for _step in range(90):
        ids = list(host.bookings)
        action = rnd.choice(["create", "create", "create", "move", "cancel", "complete", "client", "incident", "sync"])
        if action == "create" or not ids:
            made += 1
            starts = START + timedelta(days=rnd.randrange(60), hours=rnd.randrange(8))
            host.bookings[f"b{made}"] = booking(f"b{made}", rnd.choice(CLIENTS), starts, rnd.choice(LOCATIONS))
            recovery.booking_created(f"b{made}")
            kinds["created"] += 1
            continue
        target = host.bookings[rnd.choice(ids)]
        if action == "move":
            starts = START + timedelta(days=rnd.randrange(60), hours=rnd.randrange(8))
            host.bookings[target.id] = booking(target.id, target.client_id, starts, target.location, target.status)
            recovery.booking_created(target.id)
            kinds["moved"] += 1
        elif action == "cancel":
            host.bookings[target.id] = booking(
                target.id, target.client_id, target.starts_at, target.location, "cancelled"
            )
            recovery.booking_created(target.id)
            kinds["cancelled"] += 1
        elif action == "complete" and target.status != "cancelled":
            host.bookings[target.id] = booking(
                target.id, target.client_id, target.starts_at, target.location, "completed"
            )
            recovery.visit_completed(target.id)
            kinds["completed"] += 1
        elif action == "client":
            other = rnd.choice([c for c in CLIENTS if c != target.client_id])
            host.bookings[target.id] = booking(target.id, other, target.starts_at, target.location, target.status)
            recovery.booking_created(target.id)
            kinds["other client"] += 1
        elif action == "incident":
            response = http.post(
                f"/recovery/api/bookings/{target.id}/incidents",
                json={"category": "late", "severity": "minor", "description": "late"},
            )
            assert response.status_code == 201, response.get_json()
            kinds["incident"] += 1
        elif action == "sync":
            # The host changed bookings without telling the extension; the nightly sync catches up.
            for _ in range(3):
                pick = host.bookings[rnd.choice(ids)]
                starts = START + timedelta(days=rnd.randrange(60), hours=rnd.randrange(8))
                host.bookings[pick.id] = booking(pick.id, pick.client_id, starts, pick.location, pick.status)
            recovery.bookings_between(lambda a, b: [x for x in host.bookings.values() if a <= x.starts_at < b])
            recovery.sync_visits(START - timedelta(days=1), START + timedelta(days=70))
            kinds["sync"] += 1
        assert_next_visits_true(session)
    assert assert_next_visits_true(session) == made
    assert all(kinds.values()), kinds  # every kind of write happened
    assert session.query(Incident).count() == kinds["incident"]


def test_a_second_writer_of_the_same_client_waits_for_the_first(app, host, session):
    """Two desks booking one client at once: the second sees the first's visit when it commits."""
    for booking_id, days in (("b1", 0), ("b2", 3), ("b3", 1)):
        starts = START + timedelta(days=days)
        host.add_booking(
            booking_id, client_id="c1", starts_at=starts, ends_at=starts + timedelta(hours=1), status="booked"
        )
    app.recovery.booking_created("b1")
    done = threading.Event()
    errors = []

    # The first desk writes b2 and keeps its transaction open...
    flags.upsert_visit(session, host.bookings["b2"])

    def second_desk():
        try:
            with app.app_context():
                app.recovery.booking_created("b3")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=second_desk)
    thread.start()
    # ... the second desk cannot finish its write of the same client meanwhile ...
    assert not done.wait(0.7)
    session.commit()  # ... until the first commits; then it sees b2.
    thread.join(10)
    assert done.is_set() and errors == []
    assert assert_next_visits_true(session) == 3
    b1 = session.get(Visit, "b1")
    assert b1.next_visit_at == START + timedelta(days=1)  # b3, then b2
    assert session.get(Visit, "b3").next_visit_at == START + timedelta(days=3)


def test_a_bulk_refresh_recomputes_every_row(app, host, session):
    """After a bulk load (as the migration does), one call fills every row."""
    from flask_recovery.domain.visits import refresh_next_visits

    for n in range(12):
        starts = START + timedelta(days=7 * n)
        session.add(Visit(booking_id=f"v{n}", client_id=f"c{n % 3}", location=LOCATIONS[n % 2], starts_at=starts,
                          ends_at=starts + timedelta(hours=1), status="cancelled" if n == 4 else "completed",
                          created_at=starts))  # fmt: skip
    session.flush()
    refresh_next_visits(session)
    session.commit()
    assert assert_next_visits_true(session) == 12
    assert session.get(Visit, "v1").next_visit_at == START + timedelta(days=49)  # v4 is cancelled: v7
    v0 = session.get(Visit, "v0")  # c0 comes on days 0, 21, 42, 63 to center, north, center, north
    assert (v0.next_visit_at, v0.next_visit_here_at) == (START + timedelta(days=21), START + timedelta(days=42))


def test_desks_moving_bookings_between_clients_at_once_keep_every_row_true(app, host, session):
    """Four desks rescheduling and reassigning the same bookings at once: no deadlock, no stale row."""
    clients, ids = ("c1", "c2", "c3"), [f"b{n}" for n in range(6)]
    for n, booking_id in enumerate(ids):
        host.bookings[booking_id] = booking(booking_id, clients[n % 3], START + timedelta(days=n))
        app.recovery.booking_created(booking_id)
    session.commit()  # the host's commit, before the desks start
    errors = []
    start = threading.Barrier(4)

    def desk(seed):
        rnd = random.Random(seed)
        try:
            with app.app_context():
                start.wait(10)
                for _ in range(25):
                    starts = START + timedelta(days=rnd.randrange(10))
                    status = rnd.choice(["booked", "cancelled", "completed"])
                    changed = booking(rnd.choice(ids), rnd.choice(clients), starts, rnd.choice(LOCATIONS), status)
                    flags.upsert_visit(app.db.session, changed)
                    app.db.session.commit()
                app.db.session.remove()
        except Exception as exc:  # reported below
            errors.append(exc)

    desks = [threading.Thread(target=desk, args=(seed,)) for seed in range(4)]
    for thread in desks:
        thread.start()
    for thread in desks:
        thread.join(60)
    assert errors == []
    assert assert_next_visits_true(session) == 6

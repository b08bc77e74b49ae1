"""Time and SQL queries of the example salon's 200-booking day list with flag badges, against
the same page without them.

Run:  .venv/bin/python benchmarks/day_list_example.py [--db sqlite|postgresql] [--rounds N] [--pages P[,P]|all]

``benchmarks/day_list.py`` measures the badges on a bare synthetic table; this measures them
on a real host page: the example site's ``/day`` (``example_app``: its layout, role and
language switchers, Babel, the view that builds a ``Booking`` per row, and ``salon/day.html``
drawing the list's badges with ``{% set badges = recovery_badges(...) %}`` once and
``{% if booking.id in badges %}{{ badges[booking.id] }}{% endif %}`` in each row, the
pattern the README recommends).

One fresh database (a SQLite temp file, or a PostgreSQL database of its own that is dropped
at the end) holds the salon's services and masters, 200 clients and their 200 bookings on
one day (tomorrow, in the salon's time zone); 20 of the clients had an incident recorded
(``record_incident``, through the site's own booking loader) on a visit a week earlier, so
they carry an active ``vip`` flag. One app per page is built by ``create_app`` on that
database in one process, with the same config, and the same staff member (Ирина, admin)
logs in to each through the site's role switcher (CSRF token and all). The pages:

- ``badges``: the site as it is;
- ``plain``: the same site whose ``salon/day.html`` is a copy with the two badge
  expressions cut out (exact strings; the script stops if either is not there once): the
  yardstick for the ratios;
- ``each``: a copy calling ``{{ recovery_badge(booking) }}`` in every row instead (the
  first badge of the request loads every active flag in one query).

The pages are requested in interleaved rounds (each round in a rotated order). The script
checks every page has 200 rows, that each page with badges shows exactly the 20 expected
ones (``data-recovery-flag=``) and ``plain`` none, then prints the median time and the
queries of each page and the ratios to ``plain``. Aim (issue 5): at most 1.1x the time and
at most 2 extra queries. The extension is installed on every app (``create_app`` always
installs it); ``day_list.py --helper installed`` shows what that alone costs (1.00-1.03x).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy import event

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from example_app import create_app, db, recovery  # noqa: E402
from example_app.helpers import salon_today, salon_tz  # noqa: E402
from example_app.models import Client, Master, SalonBooking, Service  # noqa: E402
from example_app.seed import MASTER_LOCATION, MASTERS, SERVICES  # noqa: E402
from example_app.staff import DEMO_STAFF  # noqa: E402
from flask_recovery.domain.incidents import record_incident  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BOOKINGS = 200
FLAGGED_EVERY = 10  # every tenth client had an incident: 20 badges on the page
STAFF_KEY = "irina"  # an admin of every branch: she sees every booking's badge
BULK_CALL = "{% set badges = recovery_badges(rows|map(attribute=1)|list) %}"
BULK_ROW = "{% if booking.id in badges %}{{ badges[booking.id] }}{% endif %}"
EACH_ROW = "{{ recovery_badge(booking) }}"
#: page -> its salon/day.html: "site" (as shipped: the list's badges in one call), "stripped"
#: (no badge calls at all), "each" (``recovery_badge`` called in every row)
PAGES = {"plain": "stripped", "badges": "site", "each": "each"}


def replace_once(source: str, old: str, new: str) -> str:
    """``source`` with its one ``old`` replaced; stops the script if ``old`` is not there once."""
    found = source.count(old)
    if found != 1:
        sys.exit(f"salon/day.html: expected {old!r} once, found it {found} times")
    return source.replace(old, new)


def day_template(app, variant: str) -> str:
    """The site's ``salon/day.html`` with the badge expression cut out (``stripped``) or
    drawn by the list pattern (``bulk``), and nothing else changed."""
    source, _, _ = app.jinja_loader.get_source(app.jinja_env, "salon/day.html")
    changed = replace_once(source, BULK_CALL, "")
    changed = replace_once(changed, BULK_ROW, "" if variant == "stripped" else EACH_ROW)
    if variant == "stripped":
        assert "recovery_badge" not in changed and "badges[" not in changed, "salon/day.html has another badge call"
    assert changed != source
    return changed


def build(url: str, page: str):
    """The salon site on ``url`` for ``page``, and the counter of its SQL queries."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench",
            "TESTING": False,
            "SALON_AUTO_SEED": False,
            "MAIL_SUPPRESS_SEND": True,
        }
    )
    variant = PAGES[page]
    if variant != "site":  # before the first render, so the copy is what gets compiled
        template = day_template(app, variant)
        app.jinja_loader = ChoiceLoader([DictLoader({"salon/day.html": template}), app.jinja_loader])
    counter = {"n": 0}

    def count(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            counter["n"] += 1

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
    return app, counter


def seed(app) -> tuple[str, set[str]]:
    """The salon's services and masters, 200 clients with a booking each on one day, and a
    late start recorded on an earlier visit of every tenth client.

    Returns the day (ISO) and the ids of the bookings that should carry a badge.
    """
    staff = DEMO_STAFF[STAFF_KEY]
    with app.app_context():
        recovery.drop_all()
        db.drop_all()
        db.create_all()
        recovery.create_all()
        tz = salon_tz()
        day = salon_today() + timedelta(days=1)  # every booking ends after the flags are set
        services = {sid: Service(id=sid, name_ru=ru, name_en=en, duration=d, price=p) for sid, ru, en, d, p in SERVICES}
        db.session.add_all(services.values())
        db.session.add_all(Master(id=mid, name=name, speciality=spec) for mid, name, spec in MASTERS)
        clients = [
            Client(name=f"Клиентка {n:03d}", email=f"client{n:03d}@example.com", phone=None, locale="ru")
            for n in range(1, BOOKINGS + 1)
        ]
        db.session.add_all(clients)
        db.session.flush()

        def booking(client: Client, n: int, starts_at: datetime, status: str) -> SalonBooking:
            service = services[n % len(SERVICES) + 1]
            master_id = n % len(MASTERS) + 1
            return SalonBooking(
                client_id=client.id,
                master_id=master_id,
                service_id=service.id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=service.duration),
                price=service.price,
                status=status,
                location=MASTER_LOCATION[master_id],
            )

        opening = datetime.combine(day, datetime.min.time(), tzinfo=tz).replace(hour=8).astimezone(timezone.utc)
        today = [booking(c, n, opening + timedelta(minutes=3 * n), "booked") for n, c in enumerate(clients)]
        flagged = clients[::FLAGGED_EVERY]
        week_ago = opening - timedelta(days=8)
        earlier = [booking(c, n, week_ago + timedelta(minutes=30 * n), "completed") for n, c in enumerate(flagged)]
        db.session.add_all(today + earlier)
        db.session.commit()
        expected = {str(row.id) for row in today if row.client in flagged}
        for row in earlier:
            record_incident(
                db.session,
                recovery.load_booking(row.id),
                staff,
                category="late",
                severity="major",
                description="Мастер опоздал на 25 минут",
            )
        db.session.remove()
    return day.isoformat(), expected


def log_in(client, day_url: str) -> None:
    """Ирина picks herself in the role switcher, as at the desk."""
    html = client.get(day_url).get_data(as_text=True)
    token = re.search(r'id="staff-csrf-token" name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert token, "no CSRF token in the role switcher"
    response = client.post("/staff", data={"csrf_token": token.group(1), "staff": STAFF_KEY, "next": day_url})
    assert response.status_code == 303, response.status_code
    assert f'data-staff-key="{STAFF_KEY}"' in client.get(day_url).get_data(as_text=True), "not logged in"


def measure(client, counter, url: str) -> tuple[float, int, str]:
    counter["n"] = 0
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.status_code
    return elapsed, counter["n"], response.get_data(as_text=True)


def badge_rows(html: str) -> set[str]:
    rows = re.findall(r'<tr data-booking-id="(\d+)"(.*?)</tr>', html, re.S)
    return {booking_id for booking_id, row in rows if "data-recovery-flag=" in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument(
        "--pages",
        default="all",
        help="plain and badges, and each if asked (see the module's docstring); all (default): every one",
    )
    args = parser.parse_args()
    asked = set(PAGES) if args.pages == "all" else {"plain", "badges", *args.pages.split(",")}
    if not asked <= set(PAGES):
        parser.error(f"--pages: choose from {', '.join(PAGES)} or all")
    pages = [page for page in PAGES if page in asked]

    admin = None
    name = None
    if args.db == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/salon.sqlite"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"recovery_bench_dayex_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    apps: dict[str, tuple] = {}
    try:
        for page in pages:
            apps[page] = build(url, page)
        day, expected = seed(apps["badges"][0])
        day_url = f"/day?date={day}"
        cases = {}
        for page, (app, counter) in apps.items():
            client = app.test_client()
            log_in(client, day_url)
            cases[page] = (client, counter)
        for page, (client, counter) in cases.items():  # warm up templates, caches, connections
            for _ in range(10):
                _, _, html = measure(client, counter, day_url)
            rows = html.count("<tr data-booking-id=")
            assert rows == BOOKINGS, (page, rows)
            badges = html.count("data-recovery-flag=")
            if PAGES[page] != "stripped":
                assert badges == len(expected) == BOOKINGS // FLAGGED_EVERY, (page, badges)
                assert badge_rows(html) == expected, (page, sorted(badge_rows(html) ^ expected))
            else:
                assert badges == 0, (page, badges)
        times: dict[str, list[float]] = {page: [] for page in cases}
        queries: dict[str, set[int]] = {page: set() for page in cases}
        order = list(cases)
        for n in range(args.rounds):
            for page in order[n % len(order) :] + order[: n % len(order)]:
                client, counter = cases[page]
                elapsed, count, _ = measure(client, counter, day_url)
                times[page].append(elapsed)
                queries[page].add(count)
    finally:
        for app, _ in apps.values():
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    median = {page: statistics.median(t) * 1000 for page, t in times.items()}
    most = {page: max(q) for page, q in queries.items()}
    print(
        f"example salon /day: {BOOKINGS} bookings, {len(expected)} badges, {args.db}, {args.rounds} rounds, "
        f"logged in as {STAFF_KEY}"
    )
    print(f"{'page':>10} {'median ms':>10} {'queries':>8} {'time':>8} {'queries':>8}")
    for page in cases:
        ratio = median[page] / median["plain"]
        extra = most[page] - most["plain"]
        spread = "" if len(queries[page]) == 1 else f"  (queries varied: {sorted(queries[page])})"
        print(f"{page:>10} {median[page]:>10.2f} {most[page]:>8} {ratio:>7.3f}x {extra:>+8d}{spread}")
    extra = most["badges"] - most["plain"]
    print(f"badges / plain: {median['badges'] / median['plain']:.3f}x time, {extra:+d} queries")
    if extra > 2:
        sys.exit("more than 2 extra queries")


if __name__ == "__main__":
    main()

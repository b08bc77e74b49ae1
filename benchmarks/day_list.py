"""Time and SQL queries of a host's 200-booking day list with flag badges, against the same
list in a plain Flask app without the extension.

Run:  .venv/bin/python benchmarks/day_list.py [--db sqlite|postgresql] [--rounds N] [--helper MODE[,MODE]|all]
                                             [--pass row|booking] [--prefetch]

Every app renders the same template (below) from the same table of 200 bookings (20 of
the clients have an active flag), side by side in one process, in interleaved rounds (the
plain page, then each mode asked for). The script prints the median time and the queries
of each page and the ratios. Aim: at most 1.1x the time and at most 2 extra queries.

The template differs between the modes only in the badge calls (``mode`` picks them):

- ``bulk`` (default; the pattern the extension recommends for a list): once before the
  rows ``{% set badges = recovery_badges(bookings) %}``, and in each row
  ``{% if row.id in badges %} {{ badges[row.id] }}{% endif %}``;
- ``index``: the same call, and in each row ``{{ badges[row.id] }}`` (shorter to write;
  every row pays for a lookup and an output);
- ``each``: ``{{ recovery_badge(booking) }}`` in each row;
- ``all``: these three and the three yardsticks below in one run.

Yardsticks, to see where the time goes (same template, same data):

- ``installed``: the extension installed, the plain page without any badge call (what its
  request hooks cost every page of the host);
- ``floor``: the ``bulk`` page whose ``recovery_badges`` only does what no implementation
  can skip, then hands back badges drawn at the first request: the one query for the
  active flags, the request's locale (the labels are translated), the 20 badges in the
  page. ``bulk`` minus ``floor`` is what reading the list and drawing the badges costs;
- ``noop``: no extension; a template global returning ``""`` called in each row: what
  any per-row helper costs before it does anything (the floor of ``each``).

``bookings`` is the list the badge gets: with ``--pass row`` (default) the host's own rows
(``id``, ``client_id``, ``ends_at``), with ``--pass booking`` a ``flask_recovery.Booking``
built per row in the view. ``--prefetch`` calls ``recovery.flags_for_bookings`` in the
view; without it the first badge of the request loads every active flag at once.

Measured on the development machine (2 cores shared with other work; ``--helper all``,
medians of 400 interleaved rounds; the plain page takes ~6.4 ms), time against the plain
page, and one extra query in every badge mode:

    mode        SQLite   PostgreSQL
    bulk        1.15x    1.22x
    index       1.15x    1.23x
    each        1.22x    1.28x
    installed   1.00x    1.03x
    floor       1.07x    1.16x   (1.07-1.11x on SQLite from run to run)
    noop        1.04x    1.05x

Why 1.1x is out of reach here: 1.1x leaves 0.64 ms. ``floor`` spends 0.45-0.7 ms on
SQLite and ~1 ms on PostgreSQL (the round trip of the one query) before a row is read;
``bulk`` adds 0.35-0.47 ms to it: reading 200 client ids off SQLAlchemy rows (an attribute
read costs ~0.3 us), 20 badges at ~5 us each, the staff member and two ``url_for`` once.
A per-row helper pays at least what ``noop`` shows (0.2-0.35 ms for 200 calls) on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, render_template
from flask_babel import get_locale
from flask_sqlalchemy import SQLAlchemy
from jinja2 import ChoiceLoader, DictLoader
from markupsafe import Markup
from sqlalchemy import event

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_recovery import Booking, Recovery, Staff, domain  # noqa: E402
from flask_recovery.domain.badges import badge_cache  # noqa: E402
from flask_recovery.widgets import render_badges  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BOOKINGS = 200
FLAGGED_EVERY = 10  # every tenth client has an active flag: 20 badges on the page

DAY_LIST = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bookings</title></head>
<body><main>
<h1>Bookings for {{ day }}</h1>
<table>
  <caption>{{ rows|length }} bookings</caption>
  <thead><tr><th scope="col">Time</th><th scope="col">Client</th><th scope="col">Service</th>
  <th scope="col">Master</th><th scope="col">Status</th><th scope="col">Price</th><th scope="col"></th></tr></thead>
  <tbody>
  {% if mode in ("bulk", "index") %}{% set badges = recovery_badges(bookings) %}{% endif %}
  {% for row, booking in rows %}
  <tr data-booking-id="{{ row.id }}" class="row-{{ row.status }}">
    <td>{{ row.starts_at.strftime("%H:%M") }}–{{ row.ends_at.strftime("%H:%M") }}</td>
    <td><span class="client-name">{{ row.client_name }}</span>
      {%- if mode == "bulk" %}{% if row.id in badges %} {{ badges[row.id] }}{% endif %}
      {%- elif mode == "index" %} {{ badges[row.id] }}
      {%- elif mode == "each" %} {{ recovery_badge(booking) }}
      {%- elif mode == "noop" %} {{ noop(booking) }}{% endif %}</td>
    <td>{{ row.service }}</td>
    <td>{{ row.master }}</td>
    <td><span class="status status-{{ row.status }}">{{ row.status|capitalize }}</span></td>
    <td class="num">{{ "{:,}".format(row.price // 100).replace(",", " ") }} ₽</td>
    <td><a href="{{ url_for('checkout', booking_id=row.id) }}">Checkout
      <span class="visually-hidden">: {{ row.client_name }}</span></a></td>
  </tr>
  {% endfor %}
  </tbody>
</table>
</main></body></html>"""
MODES = ("bulk", "index", "each", "installed", "floor", "noop")

STAFF = Staff(id="a1", name="Irina", role="admin")


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes on SQLite too, as a host's own model would have them."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def host_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "bench_booking",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client_id", sa.Integer, nullable=False),
        sa.Column("client_name", sa.String(120), nullable=False),
        sa.Column("master", sa.String(120), nullable=False),
        sa.Column("service", sa.String(120), nullable=False),
        sa.Column("price", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
    )


def to_booking(row) -> Booking:
    return Booking(
        id=str(row.id),
        client_id=str(row.client_id),
        client_name=row.client_name,
        client_email=None,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        staff_id="1",
        service=row.service,
        price=row.price,
        status=row.status,
    )


def build(url: str, *, mode: str, prefetch: bool = False, pass_: str = "row"):
    """A host app on ``url``: its own bookings table and a /day page drawn in ``mode``
    (``none``: the plain page); the extension only for the badge modes and yardsticks."""
    with_extension = mode in ("bulk", "index", "each", "installed", "floor")
    app = Flask(f"host_{mode}")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY="bench", TESTING=False)
    app.jinja_loader = ChoiceLoader([DictLoader({"day.html": DAY_LIST})])  # compiled once, as a file would be
    db = SQLAlchemy()
    db.init_app(app)
    table = host_table(sa.MetaData())
    recovery = None
    if with_extension:
        recovery = Recovery(app, db=db)
        recovery.staff_loader(lambda: STAFF)

        @recovery.booking_loader
        def load(booking_id: str):
            row = db.session.execute(sa.select(table).where(table.c.id == int(booking_id))).first()
            return to_booking(row) if row else None

    if mode == "noop":
        nothing = Markup("")
        app.add_template_global(lambda booking: nothing, "noop")
    if mode == "floor":
        drawn: dict[str, Any] = {}

        def unavoidable(bookings):
            if not drawn:  # the first request draws the badges for real; later ones reuse them
                drawn["badges"] = render_badges(bookings)
                return drawn["badges"]
            badge_cache().load_all(recovery.session)  # the one query, as recovery_badges runs it
            get_locale()  # the labels' language
            return drawn["badges"]

        app.add_template_global(unavoidable, "recovery_badges")

    @app.get("/day")
    def day():
        rows = db.session.execute(sa.select(table).order_by(table.c.starts_at, table.c.id)).all()
        if mode in ("none", "installed"):
            return render_template("day.html", day="today", rows=[(row, None) for row in rows], mode="none")
        bookings = [to_booking(row) for row in rows] if pass_ == "booking" else rows
        if prefetch and recovery is not None:
            recovery.flags_for_bookings(bookings)
        pairs = list(zip(rows, bookings, strict=True))
        shown = "bulk" if mode == "floor" else mode
        return render_template("day.html", day="today", rows=pairs, bookings=bookings, mode=shown)

    @app.get("/bookings/<int:booking_id>/checkout")
    def checkout(booking_id: int):
        return f"checkout {booking_id}"

    counter = {"n": 0}
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            counter["n"] += 1

    event.listen(engine, "before_cursor_execute", count)
    return app, db, table, recovery, counter


def seed(app, db, table, recovery) -> None:
    """200 bookings today; every tenth client had a late start on an earlier visit."""
    now = datetime.now(UTC).replace(microsecond=0)
    with app.app_context():
        table.metadata.drop_all(db.engine)
        table.metadata.create_all(db.engine)
        recovery.drop_all()
        recovery.create_all()
        start = now + timedelta(hours=1)
        db.session.execute(
            table.insert(),
            [
                {
                    "id": n + 1,
                    "client_id": n + 1,
                    "client_name": f"Client {n + 1}",
                    "master": f"Master {n % 6 + 1}",
                    "service": "Women's haircut",
                    "price": 250000,
                    "status": "booked",
                    "starts_at": start + timedelta(minutes=3 * n),
                    "ends_at": start + timedelta(minutes=3 * n + 60),
                }
                for n in range(BOOKINGS)
            ],
        )
        db.session.commit()
        for client in range(1, BOOKINGS + 1, FLAGGED_EVERY):
            past = Booking(
                id=f"past-{client}",
                client_id=str(client),
                client_name=f"Client {client}",
                client_email=None,
                starts_at=now - timedelta(days=7, hours=1),
                ends_at=now - timedelta(days=7),
                staff_id="1",
                service="Women's haircut",
                price=250000,
                status="completed",
            )
            domain.record_incident(
                db.session, past, STAFF, category="late", severity="major", description="Master 25 minutes late"
            )


def measure(client, counter) -> tuple[float, int, str]:
    counter["n"] = 0
    start = time.perf_counter()
    response = client.get("/day")
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.status_code
    return elapsed, counter["n"], response.get_data(as_text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--prefetch", action="store_true", help="call recovery.flags_for_bookings in the view")
    parser.add_argument("--pass", dest="pass_", choices=["row", "booking"], default="row", help="what the badge gets")
    parser.add_argument(
        "--helper",
        default="bulk",
        help="bulk: recovery_badges(bookings) once, {% if row.id in badges %} per row; index: the same with "
        "{{ badges[row.id] }} per row; each: {{ recovery_badge(booking) }} per row; installed, floor, noop: "
        "yardsticks (see the module's docstring); several with commas (bulk,floor); all: every mode",
    )
    args = parser.parse_args()
    modes = MODES if args.helper == "all" else tuple(args.helper.split(","))
    if not set(modes) <= set(MODES):
        parser.error(f"--helper: choose from {', '.join(MODES)} or all")

    admin = None
    name = None
    if args.db == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/day.sqlite"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"recovery_bench_day_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    apps = {"plain": build(url, mode="none")}
    try:
        for mode in modes:
            apps[mode] = build(url, mode=mode, prefetch=args.prefetch, pass_=args.pass_)
        seeder = next((built for built in apps.values() if built[3] is not None), None) or build(url, mode="bulk")
        seed(*seeder[:4])
        cases = {label: (built[0].test_client(), built[4]) for label, built in apps.items()}
        for label, (client, counter) in cases.items():  # warm up templates, caches, connections
            for _ in range(10):
                _, _, html = measure(client, counter)
            rows = html.count("<tr data-booking-id=")
            badges = html.count("data-recovery-flag=")
            assert rows == BOOKINGS, (label, rows)
            expected = 0 if label in ("plain", "noop", "installed") else BOOKINGS // FLAGGED_EVERY
            assert badges == expected, (label, badges)
        times: dict[str, list[float]] = {label: [] for label in cases}
        queries: dict[str, set[int]] = {label: set() for label in cases}
        for _ in range(args.rounds):
            for label, (client, counter) in cases.items():
                elapsed, n, _ = measure(client, counter)
                times[label].append(elapsed)
                queries[label].add(n)
    finally:
        for app, db, *_ in apps.values():
            with app.app_context():
                db.engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    median = {label: statistics.median(t) * 1000 for label, t in times.items()}
    most = {label: max(q) for label, q in queries.items()}
    setting = f"{args.pass_}s" + (", prefetch" if args.prefetch else "")
    badges = BOOKINGS // FLAGGED_EVERY
    print(f"day list of {BOOKINGS} bookings, {badges} badges, {args.db}, {setting}, {args.rounds} rounds")
    print(f"{'page':>12} {'median ms':>10} {'queries':>8} {'time':>8} {'queries':>8}")
    too_many = []
    for label in cases:
        ratio = median[label] / median["plain"]
        extra = most[label] - most["plain"]
        print(f"{label:>12} {median[label]:>10.2f} {most[label]:>8} {ratio:>7.3f}x {extra:>+8d}")
        if extra > 2:
            too_many.append(label)
    if too_many:
        sys.exit(f"more than 2 extra queries: {', '.join(too_many)}")


if __name__ == "__main__":
    main()

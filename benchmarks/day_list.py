"""Time and SQL queries of a host's 200-booking day list with flag badges, against the same
list in a plain Flask app without the extension.

Run:  .venv/bin/python benchmarks/day_list.py [--db sqlite|postgresql] [--rounds N]
                                             [--helper each|bulk] [--pass row|booking] [--prefetch]

Both apps render the same template from the same table of 200 bookings (20 of the clients
have an active flag), side by side in one process, in interleaved rounds. The script prints
the median time and the queries of each page and the ratios. Aim: at most 1.1x the time
and at most 2 extra queries.

``--helper each`` (default) calls ``{{ recovery_badge(booking) }}`` in every row;
``--helper bulk`` draws the list's badges once with ``recovery_badges(bookings)`` and looks
each row's up. ``--pass row`` (default) hands the badge the host's own rows (``id``, ``client_id``,
``ends_at``); ``--pass booking`` builds a ``flask_recovery.Booking`` per row first.
``--prefetch`` calls ``recovery.flags_for_bookings`` in the view; without it the first
badge of the request loads every active flag at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask, render_template
from flask_sqlalchemy import SQLAlchemy
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy import event

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_recovery import Booking, Recovery, Staff, domain  # noqa: E402

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
  {% if mode == "bulk" %}{% set drawn = recovery_badges(rows|map(attribute=1)) %}{% endif %}
  {% for row, booking in rows %}
  <tr data-booking-id="{{ row.id }}" class="row-{{ row.status }}">
    <td>{{ row.starts_at.strftime("%H:%M") }}–{{ row.ends_at.strftime("%H:%M") }}</td>
    <td><span class="client-name">{{ row.client_name }}</span>
      {%- if mode == "each" %} {{ recovery_badge(booking) }}
      {%- elif mode == "bulk" %} {{ drawn[row.id] }}{% endif %}</td>
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


def build(url: str, *, with_extension: bool, prefetch: bool = False, pass_: str = "row", helper: str = "each"):
    """A host app on ``url``: its own bookings table and a /day page; optionally the extension."""
    app = Flask(f"host_{'recovery' if with_extension else 'plain'}")
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

    @app.get("/day")
    def day():
        rows = db.session.execute(sa.select(table).order_by(table.c.starts_at, table.c.id)).all()
        if recovery is None:
            return render_template("day.html", day="today", rows=[(row, None) for row in rows], mode="none")
        pairs = [(row, to_booking(row) if pass_ == "booking" else row) for row in rows]
        if prefetch:
            recovery.flags_for_bookings(booking for _, booking in pairs)
        return render_template("day.html", day="today", rows=pairs, mode=helper)

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
        choices=["each", "bulk"],
        default="each",
        help="each: {{ recovery_badge(b) }} per row; bulk: {% set badges = recovery_badges(rows) %} once",
    )
    args = parser.parse_args()

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

    try:
        with_ext = build(url, with_extension=True, prefetch=args.prefetch, pass_=args.pass_, helper=args.helper)
        plain = build(url, with_extension=False)
        seed(*with_ext[:4])
        cases = {"plain": (plain[0].test_client(), plain[4]), "badges": (with_ext[0].test_client(), with_ext[4])}
        for label, (client, counter) in cases.items():  # warm up templates, caches, connections
            for _ in range(10):
                _, _, html = measure(client, counter)
            rows = html.count("<tr data-booking-id=")
            badges = html.count("data-recovery-flag=")
            assert rows == BOOKINGS, (label, rows)
            assert badges == (BOOKINGS // FLAGGED_EVERY if label == "badges" else 0), (label, badges)
        times: dict[str, list[float]] = {label: [] for label in cases}
        queries: dict[str, set[int]] = {label: set() for label in cases}
        for _ in range(args.rounds):
            for label, (client, counter) in cases.items():
                elapsed, n, _ = measure(client, counter)
                times[label].append(elapsed)
                queries[label].add(n)
        for app, db, *_ in (with_ext, plain):
            with app.app_context():
                db.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    median = {label: statistics.median(t) * 1000 for label, t in times.items()}
    most = {label: max(q) for label, q in queries.items()}
    mode = f"recovery_{'badge per row' if args.helper == 'each' else 'badges once'}, {args.pass_}s"
    mode += ", prefetch" if args.prefetch else ""
    print(
        f"day list of {BOOKINGS} bookings, {BOOKINGS // FLAGGED_EVERY} badges, {args.db}, {mode}, {args.rounds} rounds"
    )
    print(f"{'page':>22} {'median ms':>10} {'queries':>8}")
    print(f"{'plain Flask':>22} {median['plain']:>10.2f} {most['plain']:>8}")
    print(f"{'with recovery_badge':>22} {median['badges']:>10.2f} {most['badges']:>8}")
    ratio = median["badges"] / median["plain"]
    extra = most["badges"] - most["plain"]
    print(f"ratio badges/plain: time {ratio:.3f}x, queries {most['badges']}/{most['plain']} ({extra:+d})")
    if extra > 2:
        sys.exit("more than 2 extra queries")


if __name__ == "__main__":
    main()

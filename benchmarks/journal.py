"""Time and SQL queries of the KPI journal page at 1,000 and at 100,000 incidents.

Run:  .venv/bin/python benchmarks/journal.py [--db postgresql|sqlite] [--rounds N]
                                              [--small 1000] [--big 100000]

Two databases are filled side by side in one run (bulk-loaded: ``COPY`` on PostgreSQL,
one ``executemany`` transaction on SQLite), with the rest in proportion to the
incidents: 5 visits (bookings) per incident over twice as many clients, a check-in for
every resolved case (some with a reminder), and a compensation for about half of the
cases. Everything falls in the last 365 days in Europe/Moscow; the page is asked for
that whole year (53 weekly buckets, 13 months: the heaviest view) and for the default
90 days. Rounds are interleaved; the script prints the median time and the query count
of each and the ratios big/small. Queries must not grow; the aim for time is well
under a second at 100,000 incidents.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_recovery.config import DEFAULT_CATEGORIES  # noqa: E402
from flask_recovery.domain.visits import refresh_next_visits  # noqa: E402
from flask_recovery.models import Compensation, FollowUp, Incident, Visit  # noqa: E402
from tests.conftest import Host, make_app  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TZ = "Europe/Moscow"
CONFIG = {"TESTING": False, "RECOVERY_TIMEZONE": TZ, "RECOVERY_MONTHLY_BUDGET": 500_000}
LOCATIONS = ("center", "north", "south")
VISITS_PER_INCIDENT = 5

VISIT_COLUMNS = ["booking_id", "client_id", "location", "staff_id", "starts_at", "ends_at", "status", "created_at",
                 "completed_at"]  # fmt: skip
INCIDENT_COLUMNS = ["id", "booking_id", "client_id", "location", "category", "severity", "conduct", "description",
                    "status", "recorded_by", "visit_started_at", "visit_ended_at", "recorded_at", "resolved_at",
                    "closed_at", "reopen_count"]  # fmt: skip
COMPENSATION_COLUMNS = ["incident_id", "booking_id", "client_id", "location", "kind", "amount", "currency", "status",
                        "requested_by", "requested_by_role", "created_at", "decided_at", "charged_to",
                        "charged_month"]  # fmt: skip
FOLLOWUP_COLUMNS = ["booking_id", "client_id", "incident_id", "location", "kind", "status", "due_at", "sent_at",
                    "answer", "answered_at", "attempts", "created_at"]  # fmt: skip


def generate(incidents: int, now: datetime, seed: int = 7) -> dict[str, list[tuple]]:
    """Rows for every table, in proportion to ``incidents`` (deterministic)."""
    rnd = random.Random(seed)
    tz = ZoneInfo(TZ)
    start = now - timedelta(days=365)
    span = int((now - start).total_seconds())
    clients = incidents * 2
    categories = [c for c in DEFAULT_CATEGORIES] + ["client_conduct"]
    visits, completed = [], []
    for n in range(incidents * VISITS_PER_INCIDENT):
        starts = start + timedelta(seconds=rnd.randrange(span + 60 * 86400))  # some bookings lie ahead
        ends = starts + timedelta(minutes=rnd.choice((45, 60, 90, 120)))
        if starts > now:
            status = "booked"
        else:
            status = rnd.choices(("completed", "cancelled", "no_show"), (90, 6, 4))[0]
        row = (f"v{n}", f"c{rnd.randrange(clients)}", rnd.choice(LOCATIONS), f"s{rnd.randrange(20)}", starts, ends,
               status, starts - timedelta(days=3), ends if status == "completed" else None)  # fmt: skip
        visits.append(row)
        if status == "completed" and ends < now - timedelta(hours=1):
            completed.append(row)
    incident_rows, compensations, followups = [], [], []
    for ident, visit in enumerate(rnd.sample(completed, incidents), start=1):
        booking_id, client_id, location, _staff, starts, ends = visit[:6]
        category = rnd.choices(categories, [10] * (len(categories) - 1) + [3])[0]
        conduct = category == "client_conduct"
        recorded = min(ends + timedelta(minutes=rnd.randrange(-30, 600)), now)
        status = rnd.choices(("open", "reopened", "resolved", "closed"), (10, 5, 50, 35))[0]
        resolved = recorded + timedelta(minutes=rnd.randrange(5, 3 * 1440)) if status != "open" else None
        if resolved is not None and resolved > now:
            resolved, status = None, "open"
        closed = resolved + timedelta(days=2) if status == "closed" else None
        incident_rows.append((ident, booking_id, client_id, location, category, "minor", conduct, "", status, "s0",
                              starts, ends, recorded, resolved, closed, int(status == "reopened")))  # fmt: skip
        if not conduct and rnd.random() < 0.5:
            created = recorded + timedelta(minutes=10)
            state = rnd.choices(("granted", "pending_approval", "rejected"), (90, 5, 5))[0]
            granted = state == "granted"
            compensations.append((ident, booking_id, client_id, location, "gift", rnd.randrange(1_000, 20_000), "EUR",
                                  state, "s0", "manager", created, created if state != "pending_approval" else None,
                                  "s0" if granted else None,
                                  created.astimezone(tz).strftime("%Y-%m") if granted else None))  # fmt: skip
        if not conduct and status in ("resolved", "closed"):
            sent = resolved + timedelta(days=1)
            if sent > now:
                continue
            answer = rnd.choices(("good", "not_right", None), (40, 10, 50))[0]
            answered = sent + timedelta(hours=5) if answer else None
            followups.append((booking_id, client_id, ident, location, "checkin", "sent", sent, sent, answer, answered,
                              1, resolved))  # fmt: skip
            if answer is None and rnd.random() < 0.3 and sent + timedelta(days=3) < now:
                late = rnd.choice(("good", None))
                reminder = sent + timedelta(days=3)
                followups.append((booking_id, client_id, ident, location, "reminder", "sent", reminder, reminder,
                                  late, reminder + timedelta(hours=2) if late else None, 1, sent))  # fmt: skip
    return {
        Visit.__tablename__: visits,
        Incident.__tablename__: incident_rows,
        Compensation.__tablename__: compensations,
        FollowUp.__tablename__: followups,
    }


COLUMNS = {
    Visit.__tablename__: VISIT_COLUMNS,
    Incident.__tablename__: INCIDENT_COLUMNS,
    Compensation.__tablename__: COMPENSATION_COLUMNS,
    FollowUp.__tablename__: FOLLOWUP_COLUMNS,
}


def load(engine: sa.Engine, rows: dict[str, list[tuple]]) -> None:
    """Bulk-load the rows: ``COPY`` on PostgreSQL, one ``executemany`` transaction on SQLite."""
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()
            for table, data in rows.items():
                with cursor.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
            raw.driver_connection.commit()
            cursor.execute("SELECT setval('recovery_incidents_id_seq', (SELECT max(id) FROM recovery_incidents))")
            raw.driver_connection.commit()
        finally:
            raw.close()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
        return

    def naive(value):
        return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value

    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        for table, data in rows.items():
            columns = COLUMNS[table]
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            raw.executemany(sql, ([naive(v) for v in row] for row in data))
        raw.execute("ANALYZE")


def build(url: str, incidents: int, now: datetime):
    host = Host()
    app = make_app(url, CONFIG, host)
    host.login("manager")
    started = time.perf_counter()
    rows = generate(incidents, now)
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
        engine = app.db.engine
        load(engine, rows)
        # What the 0005 migration does for rows written before it: every next visit at once.
        refresh_next_visits(app.db.session)
        app.db.session.commit()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
    counts = {table: len(data) for table, data in rows.items()}
    print(f"  {incidents:>7} incidents: {counts} loaded in {time.perf_counter() - started:.1f} s", flush=True)
    counter = {"n": 0}

    def count(*args):
        counter["n"] += 1

    event.listen(engine, "before_cursor_execute", count)
    return app, app.test_client(), counter


def measure(client, counter, url: str) -> tuple[float, int]:
    counter["n"] = 0
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.status_code
    return elapsed, counter["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()

    now = datetime.now(UTC).replace(microsecond=0)
    today = now.astimezone(ZoneInfo(TZ)).date()
    views = {
        "year": f"/recovery/journal?since={today - timedelta(days=364)}&until={today}",
        "90 days": "/recovery/journal",
    }
    sizes = (args.small, args.big)
    tmp = tempfile.mkdtemp()
    admin = None
    if args.db == "sqlite":
        urls = [f"sqlite:///{tmp}/{n}.sqlite" for n in sizes]
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        names = [f"recovery_bench_journal_{os.getpid()}_{n}" for n in sizes]
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        base = sa.engine.make_url(PG_ADMIN)
        urls = [base.set(database=name).render_as_string(hide_password=False) for name in names]

    print(f"journal page, {args.db}: loading")
    try:
        cases = {n: build(url, n, now) for n, url in zip(sizes, urls, strict=True)}
        for _, client, counter in cases.values():  # warm up templates, caches, connections
            for url in views.values():
                measure(client, counter, url)
        times = {(n, v): [] for n in sizes for v in views}
        queries = {(n, v): set() for n in sizes for v in views}
        for _ in range(args.rounds):
            for view, url in views.items():
                for n, (_, client, counter) in cases.items():
                    elapsed, q = measure(client, counter, url)
                    times[(n, view)].append(elapsed)
                    queries[(n, view)].add(q)
        for app, _, _ in cases.values():
            with app.app_context():
                app.db.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                for name in names:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    print(f"journal page, {args.db}, {args.rounds} interleaved rounds (median)")
    print(f"{'view':>8} {'incidents':>10} {'median ms':>10} {'queries':>8}")
    failed = False
    for view in views:
        median = {n: statistics.median(times[(n, view)]) * 1000 for n in sizes}
        for n in sizes:
            print(f"{view:>8} {n:>10,} {median[n]:>10.1f} {max(queries[(n, view)]):>8}")
        q_small, q_big = max(queries[(sizes[0], view)]), max(queries[(sizes[1], view)])
        print(
            f"{view:>8} ratio {sizes[1]:,}/{sizes[0]:,}: time {median[sizes[1]] / median[sizes[0]]:.1f}x, "
            f"queries {q_big / q_small:.2f}x"
        )
        failed = failed or q_big != q_small or len(queries[(sizes[1], view)]) != 1
    if failed:
        sys.exit("queries grow with the data")


if __name__ == "__main__":
    main()

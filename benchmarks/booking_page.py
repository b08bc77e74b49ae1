"""Time and SQL queries of the booking page with 1 and with 200 incidents in the client's history.

Run:  .venv/bin/python benchmarks/booking_page.py [--db sqlite|postgresql] [--rounds N]

Both cases are measured side by side in one run (interleaved rounds, same process), and
the script prints the ratio 200/1 for time and for queries. Queries must not grow with
history; time should stay close to 1.0x (the page lists the latest five, counts the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_recovery import domain  # noqa: E402
from tests.conftest import Host, make_app  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def build(url: str, history: int):
    host = Host()
    app = make_app(url, {"TESTING": False}, host)
    staff = host.login("admin")
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
        for n in range(history - 1):
            booking = host.add_booking(f"old{n}")
            domain.record_incident(
                app.db.session, booking, staff, category="late", severity="minor", description=f"late #{n}"
            )
        booking = host.add_booking("b1")
        domain.record_incident(
            app.db.session, booking, staff, category="result", severity="major", description="Colour came out orange"
        )
        engine = app.db.engine
    counter = {"n": 0}

    def count(*args):
        counter["n"] += 1

    event.listen(engine, "before_cursor_execute", count)
    return app, app.test_client(), counter


def measure(client, counter) -> tuple[float, int]:
    counter["n"] = 0
    start = time.perf_counter()
    response = client.get("/recovery/bookings/b1")
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.status_code
    return elapsed, counter["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    admin = None
    if args.db == "sqlite":
        urls = [f"sqlite:///{tmp}/one.sqlite", f"sqlite:///{tmp}/many.sqlite"]
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        names = [f"recovery_bench_{os.getpid()}_{k}" for k in ("one", "many")]
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        base = sa.engine.make_url(PG_ADMIN)
        urls = [base.set(database=name).render_as_string(hide_password=False) for name in names]

    try:
        cases = {1: build(urls[0], 1), 200: build(urls[1], 200)}
        for _, client, counter in cases.values():  # warm up templates, caches, connections
            for _ in range(5):
                measure(client, counter)
        times: dict[int, list[float]] = {1: [], 200: []}
        queries: dict[int, set[int]] = {1: set(), 200: set()}
        for _ in range(args.rounds):
            for history, (_, client, counter) in cases.items():
                elapsed, n = measure(client, counter)
                times[history].append(elapsed)
                queries[history].add(n)
        for app, _, _ in cases.values():
            with app.app_context():
                app.db.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                for name in names:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    median = {h: statistics.median(t) * 1000 for h, t in times.items()}
    print(f"booking page, {args.db}, {args.rounds} interleaved rounds")
    print(f"{'history':>8} {'median ms':>10} {'queries':>8}")
    for history in (1, 200):
        print(f"{history:>8} {median[history]:>10.2f} {max(queries[history]):>8}")
    print(f"ratio 200/1: time {median[200] / median[1]:.2f}x, queries {max(queries[200]) / max(queries[1]):.2f}x")
    if max(queries[200]) != max(queries[1]):
        sys.exit("queries grow with history")


if __name__ == "__main__":
    main()

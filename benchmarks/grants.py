"""Grants per second through the JSON API: one shared monthly budget vs 50 separate ones.

Run:  .venv/bin/python benchmarks/grants.py [--db postgresql|sqlite] [--threads N] [--grants M] [--rounds R]

N worker threads (default 8), each with its own test client (so its own session and pooled
connection), make M grants (default 400) as fast as they can:

- case A: every grant by ONE staff member, all charged to one budget row (a limit high
  enough that all succeed, but still checked by the conditional UPDATE);
- case B: the same grants spread over 50 staff members, each charged to a row of their own.

A and B alternate for R rounds (default 3) in one process on one fresh database (a
temporary PostgreSQL database created and dropped by the script, or a SQLite file), and
the script prints the median grants/s of each and the contention ratio B/A. A ratio near
1.0x means the shared row costs little; well above 1.0x means grants queue on its lock.
Every grant must answer 201 ``granted`` and the ledger must equal the grants' sum.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import sqlalchemy as sa
from flask import request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_recovery import Staff, domain  # noqa: E402
from flask_recovery.models import BudgetUsage, Compensation  # noqa: E402
from tests.conftest import Host, make_app  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SPREAD = 50  # staff members (and budget rows) in case B
INCIDENTS = 50  # grants go round these, the same way in both cases
AMOUNT = 1_000

SOLO = Staff(id="s-solo", name="Solo", role="admin")
MANY = [Staff(id=f"s-{n:02d}", name=f"Admin {n}", role="admin") for n in range(SPREAD)]
PEOPLE = {s.id: s for s in (SOLO, *MANY)}


def build(url: str, threads: int):
    host = Host()
    engine_options: dict = {"pool_size": threads + 2, "max_overflow": 4, "pool_timeout": 60}
    if url.startswith("sqlite"):
        engine_options["connect_args"] = {"timeout": 60}
    config = {
        "TESTING": False,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "RECOVERY_AUTHORITY": {
            "admin": {"per_grant": 10**6, "per_month": 10**15, "kinds": "all"},
            "manager": {"per_grant": None, "per_month": None, "kinds": "all"},
        },
    }
    app = make_app(url, config, host)
    # Each request names its staff member, so concurrent threads can be different people.
    app.recovery.staff_loader(lambda: PEOPLE.get(request.headers.get("X-Staff", "")))
    recorder = Host.STAFF["admin"]
    incident_ids = []
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
        for n in range(INCIDENTS):
            booking = host.add_booking(f"b{n}", client_id=f"c{n}")
            incident = domain.record_incident(
                app.db.session, booking, recorder, category="late", severity="major", description=f"late #{n}"
            )
            incident_ids.append(incident.id)
    return app, incident_ids


def run(app, incident_ids: list[int], staff_of, threads: int, grants: int, tag: str) -> float:
    """Make ``grants`` grants with ``threads`` threads; return grants per second."""
    barrier = threading.Barrier(threads + 1)
    lock = threading.Lock()
    next_k = iter(range(grants))
    failures: list[str] = []

    def worker() -> None:
        client = app.test_client()
        barrier.wait()
        while True:
            with lock:
                k = next(next_k, None)
            if k is None:
                return
            response = client.post(
                f"/recovery/api/incidents/{incident_ids[k % len(incident_ids)]}/compensations",
                json={"kind": "gift", "amount": AMOUNT, "idempotency_key": f"{tag}-{k}"},
                headers={"X-Staff": staff_of(k).id},
            )
            body = response.get_json(silent=True) or {}
            if response.status_code != 201 or body.get("status") != "granted":
                failures.append(f"{response.status_code} {body}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        sys.exit(f"{len(failures)} grants failed, e.g. {failures[0]}")
    return grants / elapsed


def check_ledger(app) -> tuple[int, int]:
    """The ledger equals the grants' sum, per staff member; returns (grants, spent)."""
    with app.app_context():
        session = app.db.session
        granted = dict(
            session.execute(
                sa.select(Compensation.charged_to, sa.func.sum(Compensation.amount))
                .where(Compensation.status == "granted")
                .group_by(Compensation.charged_to)
            ).all()
        )
        ledger = dict(
            session.execute(
                sa.select(BudgetUsage.staff_id, sa.func.sum(BudgetUsage.spent)).group_by(BudgetUsage.staff_id)
            ).all()
        )
        if {k: int(v) for k, v in granted.items()} != {k: int(v) for k, v in ledger.items() if v}:
            sys.exit(f"ledger {ledger} != granted {granted}")
        count = session.scalar(sa.select(sa.func.count()).select_from(Compensation))
        return count, sum(int(v) for v in ledger.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--threads", type=int, default=8, help="worker threads, each with its own client")
    parser.add_argument("--grants", type=int, default=400, help="grants per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved A/B rounds")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    admin = None
    name = f"recovery_bench_grants_{os.getpid()}"
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/grants.sqlite"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    cases = {
        "A": ("one staff member, one budget row", lambda k: SOLO),
        "B": (f"{SPREAD} staff members, {SPREAD} budget rows", lambda k: MANY[k % SPREAD]),
    }
    rates: dict[str, list[float]] = {"A": [], "B": []}
    try:
        app, incident_ids = build(url, args.threads)
        for case, (_, staff_of) in cases.items():  # warm up: connections, templates, first budget rows
            run(app, incident_ids, staff_of, args.threads, 2 * SPREAD, f"warm-{case}")
        for r in range(args.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for case in order:
                rates[case].append(run(app, incident_ids, cases[case][1], args.threads, args.grants, f"{case}{r}"))
        total, spent = check_ledger(app)
        with app.app_context():
            app.db.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"grants through the API, {args.db}, {args.threads} threads, {args.grants} grants per run, "
        f"{args.rounds} interleaved rounds ({total} grants, ledger {spent} = their sum)"
    )
    print(f"{'case':<4} {'':<36} {'median grants/s':>15}   runs")
    for case, (label, _) in cases.items():
        runs = " ".join(f"{x:.0f}" for x in rates[case])
        print(f"{case:<4} {label:<36} {statistics.median(rates[case]):>15.1f}   {runs}")
    ratio = statistics.median(rates["B"]) / statistics.median(rates["A"])
    print(f"contention ratio B/A: {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""Check-in mail throughput: the dispatcher vs a raw Flask-Mail loop, and 4 dispatchers vs 1.

Run:  .venv/bin/python benchmarks/followups.py [--db sqlite|postgresql] [--rows N] [--rounds R]
          [--parallel-rows M] [--dispatchers K] [--delay S] [--skip-parallel]

(i) Overhead: ``send_due_followups`` (what ``flask recovery send-followups`` runs) on N due
    follow-ups (default 2,000) into a local aiosmtpd sink, vs a raw Flask-Mail loop sending
    the same N messages, rendered beforehand, over one reused connection to the same sink.
    The dispatcher commits each row's "sent" mark before the server gets the next message
    (it overlaps the commit with that message's preparation); the line names how.
    Both run in this process, alternating every CHUNK mails (default 250: the dispatcher as
    ``send_due_followups(limit=CHUNK)``, the raw loop on the next CHUNK pre-built messages,
    one fresh connection per chunk each), so noise on a shared machine hits both alike; on
    ``--db`` (SQLite by default). Prints both rates and the ratio dispatcher/raw (aim: 0.8
    or better).
(ii) Scale-out, on PostgreSQL: K dispatcher processes (default 4) vs 1 on M due follow-ups
    (default 800) against a sink that answers each message after S seconds (default 0.02).
    Prints both throughputs and the ratio K/1 (aim: 3x or better).

The sink runs in a process of its own (``python -m tests.dispatcher_app sink``), so it takes
no CPU from what is measured. Databases are temporary (a SQLite file in a temporary
directory; PostgreSQL databases created and dropped by the script). Every case checks that
each row was sent once and the sink received exactly what was sent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flask_recovery.followup_mail import MailBatch, render_followup  # noqa: E402
from flask_recovery.followups import send_due_followups  # noqa: E402
from flask_recovery.models import FollowUp  # noqa: E402
from flask_recovery.outbox import finisher_for  # noqa: E402
from tests.dispatcher_app import create_app  # noqa: E402

PG_ADMIN = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class SinkProcess:
    """``python -m tests.dispatcher_app sink``: its port, and its counts when stopped."""

    def __init__(self, delay: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.dispatcher_app", "sink", "--delay", str(delay)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.process.stdout.readline())

    def stop(self) -> dict:
        out, _ = self.process.communicate(timeout=60)
        return json.loads(out)


def env_for(url: str, port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT, "RECOVERY_DISPATCH_DB": url, "RECOVERY_DISPATCH_SMTP_PORT": str(port)}


def fresh_app(url: str, port: int):
    os.environ.update(RECOVERY_DISPATCH_DB=url, RECOVERY_DISPATCH_SMTP_PORT=str(port))
    app = create_app()
    with app.app_context():
        app.db.session.remove()
        app.recovery.drop_all()
        app.recovery.create_all()
    return app


def seed(app, n: int, tag: str) -> None:
    """``n`` due check-ins, inserted in bulk (the host's loader knows none of the bookings)."""
    now = datetime.now(UTC)
    with app.app_context():
        session = app.db.session
        session.execute(
            sa.insert(FollowUp),
            [
                {
                    "booking_id": f"{tag}-{k}",
                    "client_id": f"c{k}",
                    "kind": "checkin",
                    "status": "scheduled",
                    "due_at": now - timedelta(minutes=1),
                    "locale": "ru" if k % 2 else "en",
                    "email": f"client{k}@client.test",
                    "client_name": f"Client{k} Test",
                    "attempts": 0,
                    "created_at": now,
                }
                for k in range(n)
            ],
        )
        session.commit()


def check_all_sent(app, expected: int) -> None:
    with app.app_context():
        session = app.db.session
        statuses = dict(session.execute(sa.select(FollowUp.status, sa.func.count()).group_by(FollowUp.status)).all())
        session.remove()
    if statuses.get("sent", 0) != expected or set(statuses) != {"sent"}:
        sys.exit(f"expected {expected} rows sent, found {statuses}")


# -- (i) dispatcher vs raw Flask-Mail ---------------------------------------------------------


def prebuilt(app, n: int) -> list:
    """The mails of the ``n`` due rows, rendered beforehand (the raw loop sends these)."""
    with app.app_context():
        session = app.db.session
        rows = list(session.scalars(sa.select(FollowUp).where(FollowUp.status == "scheduled").order_by(FollowUp.id)))
        batch = MailBatch()
        messages = [render_followup(row, None, None, batch) for row in rows]
        session.remove()
    if len(messages) != n:
        sys.exit(f"{len(messages)} due rows, expected {n}")
    return messages


def raw_seconds(app, messages: list) -> float:
    """A plain Flask-Mail loop over one connection."""
    with app.app_context():
        mail = app.extensions["mail"]
        start = time.perf_counter()
        with mail.connect() as conn:
            for message in messages:
                conn.send(message)
        return time.perf_counter() - start


def dispatcher_seconds(app, n: int) -> float:
    """One ``send_due_followups(limit=n)`` run (what ``send-followups --limit n`` runs)."""
    with app.app_context():
        start = time.perf_counter()
        result = send_due_followups(limit=n)
        elapsed = time.perf_counter() - start
        app.db.session.remove()
    if result.sent != n:
        sys.exit(f"dispatcher sent {result.sent} of {n}: {result.errors[:3]}")
    return elapsed


def overhead(url: str, db: str, n: int, chunk: int, rounds: int) -> None:
    """Both send the same n mails, alternating in chunks, so machine noise hits both alike."""
    sink = SinkProcess()
    app = fresh_app(url, sink.port)
    raw_time = dispatcher_time = 0.0
    ratios = []
    try:
        seed(app, 20, "warm")  # templates, translations, connections
        dispatcher_seconds(app, 20)
        for r in range(rounds):
            seed(app, n, f"r{r}")
            messages = prebuilt(app, n)
            for k, offset in enumerate(range(0, n, chunk)):
                part = messages[offset : offset + chunk]
                if k % 2:
                    d = dispatcher_seconds(app, len(part))
                    w = raw_seconds(app, part)
                else:
                    w = raw_seconds(app, part)
                    d = dispatcher_seconds(app, len(part))
                raw_time += w
                dispatcher_time += d
                ratios.append(w / d)
        check_all_sent(app, 20 + rounds * n)
        with app.app_context():
            finisher = finisher_for(app.db.session, FollowUp)
            marks = type(finisher).__name__
            finisher.close()
            app.db.session.remove()
            app.db.engine.dispose()
    finally:
        counts = sink.stop()
    if counts["messages"] != 20 + 2 * rounds * n:
        sys.exit(f"the sink received {counts['messages']} messages, expected {20 + 2 * rounds * n}")
    total = rounds * n
    raw, dispatcher = total / raw_time, total / dispatcher_time
    print(f"(i) {n} due follow-ups into a local aiosmtpd sink, {db}, {rounds} round(s), alternating chunks of {chunk}")
    print(f"    raw Flask-Mail loop, one connection, pre-built messages: {raw:8.1f} msg/s")
    print(f"    send_due_followups (plan, claim, render, send, mark):     {dispatcher:8.1f} msg/s   (marks: {marks})")
    spread = f"chunks {min(ratios):.2f}-{max(ratios):.2f}"
    print(f"    ratio dispatcher/raw: {dispatcher / raw:.2f} ({spread}; aim: 0.8 or better)")


# -- (ii) K dispatcher processes vs 1 ---------------------------------------------------------------


def processes_rate(url: str, n: int, k: int, delay: float, batch: int) -> tuple[float, list[int]]:
    """Messages/s of ``k`` dispatcher processes started together on ``n`` due rows."""
    sink = SinkProcess(delay)
    app = fresh_app(url, sink.port)
    seed(app, n, "p")
    with app.app_context():
        app.db.engine.dispose()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dispatcher_app", "dispatch", "--wait-go", "--batch", str(batch)],
            cwd=ROOT,
            env=env_for(url, sink.port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(k)
    ]
    try:
        for worker in workers:
            if worker.stdout.readline().strip() != "ready":
                sys.exit("a dispatcher did not start")
        start = time.perf_counter()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = [json.loads(worker.stdout.readline()) for worker in workers]
        elapsed = time.perf_counter() - start
        for worker in workers:
            worker.wait(60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            worker.stdin.close()
            worker.stdout.close()
        counts = sink.stop()
    sent = [report["sent"] for report in reports]
    check_all_sent(app, n)
    if sum(sent) != n or counts["messages"] != n or counts["distinct"] != n or counts["duplicates"]:
        sys.exit(f"{k} dispatchers: sent {sent}, sink {counts}")
    return n / elapsed, sent


def scale_out(url: str, n: int, k: int, delay: float, batch: int) -> None:
    one, _ = processes_rate(url, n, 1, delay, batch)
    many, split = processes_rate(url, n, k, delay, batch)
    print(f"(ii) {n} due follow-ups, postgresql, sink answering each message after {delay * 1000:.0f} ms")
    print(f"    1 dispatcher process:  {one:8.1f} msg/s")
    print(f"    {k} dispatcher processes: {many:8.1f} msg/s   (split {split})")
    print(f"    ratio {k}/1: {many / one:.2f}x (aim: 3x or better; this machine has {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite", help="database for (i)")
    parser.add_argument("--rows", type=int, default=2000, help="due follow-ups in (i)")
    parser.add_argument("--chunk", type=int, default=250, help="(i) alternates raw and dispatcher every CHUNK mails")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of ROWS in (i), each on fresh rows")
    parser.add_argument("--parallel-rows", type=int, default=800, help="due follow-ups in (ii)")
    parser.add_argument("--dispatchers", type=int, default=4, help="dispatcher processes in (ii)")
    parser.add_argument("--delay", type=float, default=0.02, help="the sink's answer delay in (ii), seconds")
    parser.add_argument("--batch", type=int, default=50, help="the dispatchers' batch size in (ii)")
    parser.add_argument("--skip-overhead", action="store_true", help="skip (i)")
    parser.add_argument("--skip-parallel", action="store_true", help="skip (ii)")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def pg_database(label: str) -> str:
        name = f"recovery_bench_followups_{os.getpid()}_{label}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    try:
        if not args.skip_overhead:
            url = f"sqlite:///{tmp}/followups.sqlite" if args.db == "sqlite" else pg_database("overhead")
            overhead(url, args.db, args.rows, args.chunk, args.rounds)
        if not args.skip_parallel:
            scale_out(pg_database("parallel"), args.parallel_rows, args.dispatchers, args.delay, args.batch)
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

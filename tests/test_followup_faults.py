"""The follow-up outbox under process-level faults, over real SMTP (aiosmtpd), on SQLite and PostgreSQL.

Dispatchers here are separate processes (``tests/dispatcher_app.py``): four started
together on 1,000 due rows, one killed with SIGKILL after claiming, one killed while the
server holds its answer, two overlapping cron runs of ``flask recovery send-followups``.
In every case: nothing sent twice, nothing due left unsent, the reason of every failure
recorded. Rows are inserted directly (the host's booking loader knows none of these
bookings, so each mail is rendered from its row, as for an archived booking).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from flask_recovery import followups
from flask_recovery.followups import LEASE, send_due_followups
from flask_recovery.mail import TimeoutConnection
from flask_recovery.models import FollowUp
from tests.dispatcher_app import SENDER, start_sink

ROOT = Path(__file__).resolve().parent.parent
ANY_TIME = {
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
}
pytestmark = [pytest.mark.config(**ANY_TIME), pytest.mark.slow]
AFTER_LEASE = LEASE + timedelta(minutes=1)


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def sink():
    """A real aiosmtpd server in this process (the dispatchers are other processes)."""
    controller, sink = start_sink()
    yield sink
    controller.stop()


@pytest.fixture
def processes():
    """Subprocesses a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def point_mail_at(app, port):
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", port, SENDER


def seed(session, emails: list[str], due: datetime | None = None) -> None:
    """One due check-in row per address, in one bulk insert."""
    now = datetime.now(UTC)
    due = due or now - timedelta(minutes=1)
    session.execute(
        insert(FollowUp),
        [
            {
                "booking_id": f"b{n}",
                "client_id": f"c{n}",
                "kind": "checkin",
                "status": "scheduled",
                "due_at": due,
                "locale": "ru" if n % 2 else "en",
                "email": email,
                "client_name": f"Client{n} Test",
                "attempts": 0,
                "created_at": now,
            }
            for n, email in enumerate(emails)
        ],
    )
    session.commit()


def clients(n: int, start: int = 0) -> list[str]:
    return [f"client{k}@client.test" for k in range(start, start + n)]


def env_for(db_url: str, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RECOVERY_DISPATCH_DB=db_url,
        RECOVERY_DISPATCH_SMTP_PORT=str(port),
        # the wheel under CI (.ci/test sets PYTHONPATH to the tests only), the checkout otherwise
        PYTHONPATH=os.environ.get("PYTHONPATH") or str(ROOT),
        FLASK_APP="tests.dispatcher_app:create_app",
    )
    return env


def start(processes, db_url, port, tmp_path, *args) -> subprocess.Popen:
    """``python -m tests.dispatcher_app *args`` (stderr to a file, for failure messages)."""
    log = tmp_path / f"proc{len(processes)}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.dispatcher_app", *args],
            cwd=tmp_path,  # not the checkout: Flask's CLI puts the working directory on sys.path
            env=env_for(db_url, port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    process.log = log
    processes.append(process)
    return process


def read_line(process, timeout: float = 30) -> str:
    line = process.stdout.readline()
    if not line:
        process.wait(timeout)
        pytest.fail(f"subprocess ended (rc {process.returncode}):\n{process.log.read_text()[-3000:]}")
    return line.strip()


def rows(session) -> list[FollowUp]:
    session.expire_all()
    return list(session.scalars(select(FollowUp).order_by(FollowUp.id)))


def assert_once_each(sink, session, expected_sent: int) -> None:
    """Every sent row arrived exactly once, under its own Message-ID, and nothing else did."""
    time.sleep(0.1)  # the last 250s are on their way
    counts = sink.counts()
    assert counts["duplicates"] == [], f"sent twice: {counts['duplicates'][:10]}"
    sent = [r for r in rows(session) if r.status == "sent"]
    assert len(sent) == expected_sent
    assert counts["messages"] == expected_sent
    assert {m for m, _ in sink.accepted} == {r.message_id for r in sent}
    assert {rcpt for _, rcpt in sink.accepted} == {r.email for r in sent}


def assert_failures_recorded(session) -> None:
    """Nothing is left due or leased, and every row that is not sent says why."""
    for row in rows(session):
        assert row.status in ("sent", "failed", "cancelled"), (row.id, row.status, row.last_error)
        if row.status != "sent":
            assert row.last_error, f"follow-up {row.id} ({row.email}) is {row.status} without a reason"


# -- four dispatcher processes ---------------------------------------------------------------


def test_four_dispatcher_processes_send_a_thousand_mails_once(app, session, db_url, sink, processes, tmp_path):
    with app.app_context():
        seed(session, clients(1000))
    workers = [start(processes, db_url, sink.port, tmp_path, "dispatch", "--wait-go") for _ in range(4)]
    for worker in workers:
        assert read_line(worker) == "ready"
    for worker in workers:  # all four are connected: go
        worker.stdin.write("go\n")
        worker.stdin.flush()
    reports = [json.loads(read_line(worker, 120)) for worker in workers]
    for worker in workers:
        assert worker.wait(30) == 0, worker.log.read_text()[-3000:]
    assert sum(r["sent"] for r in reports) == 1000, reports
    assert all(r["retry"] == r["failed"] == 0 for r in reports), reports
    assert sum(1 for r in reports if r["sent"]) >= 2, f"the dispatchers did not overlap: {reports}"
    with app.app_context():
        assert_once_each(sink, session, 1000)
        assert len({rcpt for _, rcpt in sink.accepted}) == 1000
        assert {r.status for r in rows(session)} == {"sent"}


# -- a dispatcher killed with SIGKILL -----------------------------------------------------------


def test_a_dispatcher_killed_after_claiming_leaves_its_rows_for_after_the_lease(
    app, session, db_url, sink, processes, tmp_path
):
    point_mail_at(app, sink.port)
    with app.app_context():
        seed(session, clients(60))
    doomed = start(processes, db_url, sink.port, tmp_path, "claim", "--limit", "40")
    leased = set(json.loads(read_line(doomed))["ids"])
    assert len(leased) == 40
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    with app.app_context():
        now = datetime.now(UTC)
        right_after = send_due_followups(now=now)  # the 20 unclaimed only: the 40 are leased
        assert (right_after.sent, right_after.retry, right_after.failed) == (20, 0, 0)
        still_leased = {r.id for r in rows(session) if r.status == "sending"}
        assert still_leased == leased
        assert send_due_followups(now=now + LEASE - timedelta(seconds=5)).sent == 0  # not a moment early
        after_lease = send_due_followups(now=now + AFTER_LEASE)
        assert (after_lease.sent, after_lease.retry, after_lease.failed) == (40, 0, 0)
        assert send_due_followups(now=now + 2 * AFTER_LEASE).sent == 0
        assert_once_each(sink, session, 60)
        assert_failures_recorded(session)


def test_a_dispatcher_killed_while_the_server_holds_its_answer(app, session, db_url, sink, processes, tmp_path):
    """Killed mid-batch: what the server acknowledged stays sent, the message in flight (never
    acknowledged) and the rest of the batch go out once, after the lease."""
    point_mail_at(app, sink.port)
    sink.hold_at = 11
    with app.app_context():
        seed(session, clients(30))
    doomed = start(processes, db_url, sink.port, tmp_path, "dispatch", "--batch", "20")
    assert read_line(doomed) == "ready"
    assert sink.held.wait(30), doomed.log.read_text()[-3000:]
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    time.sleep(0.3)  # the server notices the dropped connection
    assert len(sink.accepted) == 10
    with app.app_context():
        by_status = {}
        for row in rows(session):
            by_status.setdefault(row.status, []).append(row.id)
        assert len(by_status["sent"]) == 10 and len(by_status["sending"]) == 10
        assert len(by_status["scheduled"]) == 10  # the second batch was never claimed
        now = datetime.now(UTC)
        assert send_due_followups(now=now).sent == 10  # the unclaimed batch; the leased wait
        assert send_due_followups(now=now + AFTER_LEASE).sent == 10
        assert_once_each(sink, session, 30)
        assert_failures_recorded(session)


# -- two overlapping cron runs -----------------------------------------------------------------


def test_two_overlapping_cron_runs_send_once_and_record_every_failure(app, session, db_url, sink, tmp_path):
    """``flask recovery send-followups`` twice at once against a server that takes 20 ms per
    message, refuses some mailboxes (550) and greylists others (451 once)."""
    sink.delay = 0.02
    point_mail_at(app, sink.port)
    emails = clients(96)
    for k in range(0, 96, 12):
        emails[k] = f"bounce{k}@client.test"
        emails[k + 1] = f"later{k}@client.test"
    with app.app_context():
        seed(session, emails)
    command = [sys.executable, "-m", "flask", "recovery", "send-followups"]
    env = env_for(db_url, sink.port)
    runs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    sent = [int(out.split("sent ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(sent) == 80 and all(sent), f"both runs should have sent some: {outputs}"
    stderr = "".join(err for _, err in outputs)
    bounced = [e for e in emails if e.startswith("bounce")]
    greylisted = [e for e in emails if e.startswith("later")]
    with app.app_context():
        by_email = {r.email: r for r in rows(session)}
        for email in bounced:
            row = by_email[email]
            assert row.status == "failed" and row.attempts == 1, (email, row.status)
            assert "550" in row.last_error and "mailbox unavailable" in row.last_error
            assert f"follow-up {row.id}: " in stderr  # the cron run reports it too
        for email in greylisted:
            row = by_email[email]
            assert row.status == "scheduled" and row.attempts == 1, (email, row.status)
            assert "451" in row.last_error and "greylisted" in row.last_error
            assert row.due_at > datetime.now(UTC)  # backed off, not retried at once
        later = send_due_followups(now=datetime.now(UTC) + timedelta(minutes=6))  # the next cron run
        assert (later.sent, later.retry, later.failed) == (8, 0, 0)
        by_email = {r.email: r for r in rows(session)}
        assert all(by_email[e].status == "sent" and by_email[e].last_error is None for e in greylisted)
        assert_once_each(sink, session, 88)
        assert_failures_recorded(session)
    assert sorted(rcpt for code, rcpt in sink.refused if code == 550) == sorted(bounced)


# -- rows that cannot be sent as they are, and slow runs ------------------------------------------


def test_an_unsendable_address_is_recorded_and_blocks_nothing(app, session, sink):
    """A Cyrillic letter in a mailbox name (a common typo) or a broken IDN domain cannot be
    sent without SMTPUTF8: that row fails with its reason; the rest of the outbox goes out."""
    point_mail_at(app, sink.port)
    emails = clients(6)
    emails[1] = "\u0430nna@client.test"  # Cyrillic 'а'
    emails[3] = "x@\u043f\u043e\u0447\u0442\u0430..\u0440\u0444"  # empty IDN label
    with app.app_context():
        seed(session, emails)
        try:
            result = send_due_followups()
        except Exception as error:
            session.rollback()
            left = [(r.email, r.status, r.last_error) for r in rows(session)]
            pytest.fail(f"one unsendable address crashed the whole run ({type(error).__name__}: {error}); {left}")
        assert (result.sent, result.failed) == (4, 2)
        bad = [r for r in rows(session) if r.email in (emails[1], emails[3])]
        assert all(r.status == "failed" and r.last_error for r in bad), [(r.status, r.last_error) for r in bad]
        assert_once_each(sink, session, 4)
        assert_failures_recorded(session)


def test_a_long_run_keeps_its_lease_on_later_batches(app, session, sink, monkeypatch):
    """A run against a slow server (three minutes a message here, on a fake clock) claims its
    second batch after LEASE has passed since it started: that batch must still be its own,
    not free for a dispatcher starting meanwhile."""
    point_mail_at(app, sink.port)
    clock = {"now": datetime.now(UTC)}
    monkeypatch.setattr(followups, "utcnow", lambda: clock["now"])
    original = TimeoutConnection.send
    grabbed: list[int] = []
    sends = {"n": 0}

    def slow_send(self, message, envelope_from=None, **kwargs):
        sends["n"] += 1
        if sends["n"] == 8:  # another cron run starts now
            with Session(app.db.engine) as other:
                grabbed.extend(followups.claim(other, 50, clock["now"])[1])
        original(self, message, envelope_from, **kwargs)
        clock["now"] += timedelta(minutes=3)

    monkeypatch.setattr(TimeoutConnection, "send", slow_send)
    with app.app_context():
        seed(session, clients(10), due=clock["now"] - timedelta(minutes=1))
        result = send_due_followups(batch_size=5)
        assert grabbed == [], f"rows {grabbed} were taken over while their run was sending them"
        assert result.sent == 10

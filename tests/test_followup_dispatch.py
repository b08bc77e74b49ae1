"""Sending the due check-ins: once, over real SMTP, surviving failures; the CLI and its summary."""

import smtplib
import socket
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from flask_recovery import domain, outbox
from flask_recovery.followups import claim, plan_followups, send_due_followups
from flask_recovery.mail import TimeoutConnection
from flask_recovery.models import Erasure, FollowUp, utcnow

from .conftest import make_app

ANY_TIME = {
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
}
pytestmark = pytest.mark.config(**ANY_TIME)


def point_mail_at(app, port):
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", port, "Velvet salon <hello@salon.example.com>"


def resolved_cases(app, host, session, n=1):
    staff = host.login("admin")
    for i in range(n):
        booking = host.add_booking(
            f"b{i}",
            client_id=f"c{i}",
            client_email=f"client{i}@client.test",
            client_name=f"Client{i} Test",
            locale="en" if i % 2 else "ru",
        )
        incident = domain.record_incident(
            session,
            booking,
            staff,
            category="late",
            severity="major",
            description="internal note",
            corrective_action="A buffer between visits",
        )
        domain.resolve_incident(session, incident.id, staff)
    session.commit()  # the host's commit: the rules only flush


def wait_for(messages, n):
    deadline = time.monotonic() + 10
    while len(messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_due_check_ins_are_sent_once(app, host, session, smtp_server, runner, signal_log):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 3)
    first = runner.invoke(args=["recovery", "send-followups"])
    assert first.exit_code == 0, first.output
    assert "planned 3, sent 3, retry later 0, failed 0" in first.output
    second = runner.invoke(args=["recovery", "send-followups"])
    assert "planned 0, sent 0" in second.output
    wait_for(smtp_server.messages, 3)
    assert sorted(m["To"].split("<")[-1].rstrip(">") for m in smtp_server.messages) == [
        "client0@client.test",
        "client1@client.test",
        "client2@client.test",
    ]
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 3
    rows = session.query(FollowUp).all()
    assert {r.status for r in rows} == {"sent"} and all(r.message_id for r in rows)
    assert [n for n, _ in signal_log].count("followup_sent") == 3


def test_dry_run_changes_nothing(app, host, session, runner):
    with app.app_context():
        resolved_cases(app, host, session, 1)
    result = runner.invoke(args=["recovery", "send-followups", "--dry-run"])
    assert "0 check-in mails due" in result.output
    assert session.query(FollowUp).count() == 0


@pytest.mark.config(RECOVERY_BASE_URL=None)
def test_links_need_a_base_url(app, runner):
    result = runner.invoke(args=["recovery", "send-followups"])
    assert result.exit_code != 0 and "RECOVERY_BASE_URL" in result.output and "Traceback" not in result.output


def test_smtp_down_then_up(app, host, session, smtp_server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with app.app_context():
        resolved_cases(app, host, session, 2)
        point_mail_at(app, dead)
        down = send_due_followups()
        assert (down.sent, down.retry, down.failed) == (0, 2, 0)
        rows = session.query(FollowUp).all()
        assert all(r.status == "scheduled" and r.attempts == 1 and "connection" in r.last_error for r in rows)
        point_mail_at(app, smtp_server.port)
        later = datetime.now(UTC) + timedelta(minutes=6)
        up = send_due_followups(now=later)
        assert (up.sent, up.retry) == (2, 0)
    wait_for(smtp_server.messages, 2)
    assert len(smtp_server.messages) == 2


@pytest.mark.parametrize(("code", "status", "retry"), [(451, "scheduled", 1), (550, "failed", 0)])
def test_temporary_and_permanent_refusals(app, host, session, smtp_server, monkeypatch, code, status, retry):
    point_mail_at(app, smtp_server.port)
    original = TimeoutConnection.send
    calls = {"n": 0}

    def flaky(self, message, envelope_from=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise smtplib.SMTPDataError(code, b"try again later" if code < 500 else b"mailbox unavailable")
        return original(self, message, envelope_from, **kwargs)

    monkeypatch.setattr(TimeoutConnection, "send", flaky)
    with app.app_context():
        resolved_cases(app, host, session, 2)
        result = send_due_followups()
        assert (result.sent, result.retry, result.failed) == (1, retry, 1 - retry)
        failed = [r for r in session.query(FollowUp) if r.status != "sent"]
        assert len(failed) == 1 and failed[0].status == status and str(code) in failed[0].last_error
        if retry:
            again = send_due_followups(now=datetime.now(UTC) + timedelta(minutes=6))
            assert again.sent == 1
    assert all(r.status == ("sent" if retry else r.status) for r in session.query(FollowUp))


def test_a_stalled_server_times_out_and_the_run_ends(app, host, session):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    app.config["RECOVERY_SMTP_TIMEOUT"] = 0.5
    point_mail_at(app, listener.getsockname()[1])
    started = time.monotonic()
    with app.app_context():
        resolved_cases(app, host, session, 1)
        result = send_due_followups()
    assert time.monotonic() - started < 10
    assert result.retry == 1 and result.sent == 0
    assert "timed out" in session.query(FollowUp).one().last_error
    listener.close()
    for conn, _ in accepted:
        conn.close()


def test_a_broken_row_does_not_stop_the_batch(app, host, session, smtp_server, monkeypatch):
    point_mail_at(app, smtp_server.port)
    import flask_recovery.followup_mail as followup_mail

    original = followup_mail.render_followup

    def render(followup, booking, incident, **kwargs):
        if followup.booking_id == "b1":
            raise KeyError("template variable missing")
        return original(followup, booking, incident, **kwargs)

    monkeypatch.setattr(followup_mail, "render_followup", render)
    with app.app_context():
        resolved_cases(app, host, session, 3)
        result = send_due_followups()
    assert (result.sent, result.failed) == (2, 1)
    broken = session.query(FollowUp).filter_by(booking_id="b1").one()
    assert broken.status == "failed" and "template variable missing" in broken.last_error


def test_a_lease_held_by_a_dead_dispatcher_is_taken_over_after_it_expires(app, host, session, smtp_server):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 2)
        from flask_recovery.followups import plan_followups

        plan_followups(session)
        now = datetime.now(UTC)
        token, ids = claim(session, 10, now)  # this "process" dies without sending
        assert len(ids) == 2
        assert send_due_followups(now=now).sent == 0  # leased: nobody else sends them
        after = send_due_followups(now=now + timedelta(minutes=11))
        assert after.sent == 2
    wait_for(smtp_server.messages, 2)
    assert len(smtp_server.messages) == 2


def test_concurrent_dispatchers_send_each_mail_once(app, host, session, smtp_server):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 40)
        from flask_recovery.followups import plan_followups

        plan_followups(session)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        try:
            with app.app_context():
                barrier.wait()
                results.append(send_due_followups(batch_size=5))
                app.db.session.remove()
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sum(r.sent for r in results) == 40
    wait_for(smtp_server.messages, 40)
    time.sleep(0.3)
    assert len(smtp_server.messages) == 40
    assert len({m["To"] for m in smtp_server.messages}) == 40


@pytest.mark.config(RECOVERY_FOLLOWUP_REMINDER_AFTER=timedelta(days=3))
def test_at_most_one_reminder_for_an_unanswered_check_in(app, host, session, smtp_server):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 2)
        assert send_due_followups().sent == 2
        answered = session.query(FollowUp).filter_by(booking_id="b0").one()
        answered.answer = "good"
        session.commit()
        assert send_due_followups(now=datetime.now(UTC) + timedelta(days=1)).planned == 0
        later = datetime.now(UTC) + timedelta(days=4)
        result = send_due_followups(now=later)
        assert (result.planned, result.sent) == (1, 1)
        reminder = session.query(FollowUp).filter_by(kind="reminder").one()
        assert reminder.booking_id == "b1" and reminder.status == "sent"
        assert send_due_followups(now=later + timedelta(days=10)).planned == 0
    wait_for(smtp_server.messages, 3)
    assert len(smtp_server.messages) == 3


@pytest.mark.config(RECOVERY_FOLLOWUP_REMINDER_AFTER=None)
def test_no_reminder_when_switched_off(app, host, session, smtp_server):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 1)
        send_due_followups()
        assert send_due_followups(now=datetime.now(UTC) + timedelta(days=30)).planned == 0


def test_a_missing_sender_is_a_clear_error_not_lost_mail(app, host, session, runner):
    app.extensions["mail"].default_sender = None
    with app.app_context():
        resolved_cases(app, host, session, 1)
    result = runner.invoke(args=["recovery", "send-followups"])
    assert result.exit_code != 0 and "MAIL_DEFAULT_SENDER" in result.output and "Traceback" not in result.output
    assert session.query(FollowUp).count() == 0


# -- erased clients (forget-client) ------------------------------------------------------------


def _recipients(smtp_server):
    return sorted(m["To"].split("<")[-1].rstrip(">") for m in smtp_server.messages)


def test_a_client_erased_after_planning_gets_nothing(app, host, session, smtp_server):
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 3)
        plan_followups(session)
        session.add(Erasure(client_id="c1", erased_at=utcnow()))  # forget-client, after planning
        session.commit()
        result = send_due_followups()
        assert (result.sent, result.retry, result.failed) == (2, 0, 0)
        row = session.query(FollowUp).filter_by(client_id="c1").one()
        assert (row.status, row.last_error) == ("cancelled", "erased")
        assert row.email is None and row.client_name is None  # nothing of her kept on the row
        assert send_due_followups(now=datetime.now(UTC) + timedelta(days=1)).sent == 0
    wait_for(smtp_server.messages, 2)
    time.sleep(0.2)
    assert _recipients(smtp_server) == ["client0@client.test", "client2@client.test"]


def test_a_client_erased_while_her_batch_is_prepared_gets_nothing(app, host, session, smtp_server, monkeypatch):
    """forget-client runs in another process while the batch is being rendered: the last
    look before the SMTP conversation still sees it."""
    point_mail_at(app, smtp_server.port)
    import flask_recovery.followup_mail as followup_mail

    original = followup_mail.render_followup

    def render(followup, booking, incident, **kwargs):
        if followup.client_id == "c0":  # rendered before c1's row
            with Session(app.db.engine) as other:
                other.add(Erasure(client_id="c1", erased_at=utcnow()))
                other.commit()
        return original(followup, booking, incident, **kwargs)

    monkeypatch.setattr(followup_mail, "render_followup", render)
    with app.app_context():
        resolved_cases(app, host, session, 3)
        result = send_due_followups()
        assert result.sent == 2
        row = session.query(FollowUp).filter_by(client_id="c1").one()
        assert (row.status, row.last_error, row.email) == ("cancelled", "erased", None)
    wait_for(smtp_server.messages, 2)
    time.sleep(0.2)
    assert _recipients(smtp_server) == ["client0@client.test", "client2@client.test"]


# -- each mark is committed before the next message goes ----------------------------------------------


class _CheckingSink:
    """Accepts every message; at each one, counts the rows already marked sent in the database."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.marked_before: list[int] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        with self.engine.connect() as conn:
            marked = conn.execute(select(func.count()).where(FollowUp.status == "sent")).scalar_one()
        self.marked_before.append(marked)
        return "250 OK"


@contextmanager
def _slow_sent_marks(app, db_url, monkeypatch, seconds):
    """Every "sent" mark takes ``seconds`` longer to commit, without slowing the sender itself."""
    if db_url.startswith("sqlite"):
        original = outbox.ThreadedFinisher._write

        def slow_write(self, row_id, token, values):
            if values.get("status") == "sent":
                time.sleep(seconds)
            return original(self, row_id, token, values)

        monkeypatch.setattr(outbox.ThreadedFinisher, "_write", slow_write)
        yield
        return
    with app.db.engine.begin() as conn:  # PostgreSQL: the server takes its time, the sender goes on
        conn.execute(
            text(
                "CREATE FUNCTION recovery_test_slow() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER recovery_test_slow BEFORE UPDATE ON recovery_followups FOR EACH ROW "
                "WHEN (NEW.status = 'sent') EXECUTE FUNCTION recovery_test_slow()"
            )
        )
    try:
        yield
    finally:
        with app.db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER recovery_test_slow ON recovery_followups"))
            conn.execute(text("DROP FUNCTION recovery_test_slow()"))


def test_each_mail_is_marked_sent_before_the_next_one_is_handed_to_the_server(app, host, session, db_url, monkeypatch):
    """So a dispatcher that dies at any moment leaves at most the one mail the server had
    just accepted to go out again after the lease, even when commits are slow."""
    from aiosmtpd.controller import Controller

    from tests.dispatcher_app import free_port

    sink = _CheckingSink(app.db.engine)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        point_mail_at(app, port)
        with app.app_context():
            resolved_cases(app, host, session, 5)
            with _slow_sent_marks(app, db_url, monkeypatch, 0.05):
                result = send_due_followups()
            assert result.sent == 5
    finally:
        controller.stop()
    assert sink.marked_before == [0, 1, 2, 3, 4]


def test_a_database_failure_while_marking_stops_the_run_before_the_next_mail(app, host, session, db_url, smtp_server):
    """The mark of the second mail cannot be written: no third mail goes out; the second
    stays leased (it goes out again after the lease: the one mail a crash may repeat)."""
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        resolved_cases(app, host, session, 3)
        with app.db.engine.begin() as conn:
            if db_url.startswith("sqlite"):
                conn.execute(
                    text(
                        "CREATE TRIGGER recovery_test_broken BEFORE UPDATE ON recovery_followups "
                        "WHEN NEW.status = 'sent' AND OLD.booking_id = 'b1' "
                        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                    )
                )
            else:
                conn.execute(
                    text(
                        "CREATE FUNCTION recovery_test_broken() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
                    )
                )
                conn.execute(
                    text(
                        "CREATE TRIGGER recovery_test_broken BEFORE UPDATE ON recovery_followups FOR EACH ROW "
                        "WHEN (NEW.status = 'sent' AND OLD.booking_id = 'b1') EXECUTE FUNCTION recovery_test_broken()"
                    )
                )
        try:
            with pytest.raises(outbox.FinishError, match="disk on fire"):
                send_due_followups()
        finally:
            with app.db.engine.begin() as conn:
                conn.execute(
                    text(
                        "DROP TRIGGER recovery_test_broken"
                        + ("" if db_url.startswith("sqlite") else " ON recovery_followups")
                    )
                )
                if not db_url.startswith("sqlite"):
                    conn.execute(text("DROP FUNCTION recovery_test_broken()"))
        session.rollback()
        status = {r.booking_id: r.status for r in session.query(FollowUp)}
        assert status == {"b0": "sent", "b1": "sending", "b2": "sending"}
    wait_for(smtp_server.messages, 2)
    time.sleep(0.2)
    assert _recipients(smtp_server) == ["client0@client.test", "client1@client.test"]


@pytest.mark.parametrize("engine", ["sqlite in memory", "a one-connection pool"])
def test_marks_go_through_the_session_when_there_is_no_second_connection(host, smtp_server, db_url, engine):
    """SQLite in memory (its one connection cannot move to a writer thread) or a pool of
    one connection (the session holds it): marks are committed on the session instead."""
    if engine == "sqlite in memory":
        app = make_app("sqlite://", {**ANY_TIME}, host)
    else:
        app = make_app(db_url, {**ANY_TIME, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}}, host)
    point_mail_at(app, smtp_server.port)
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
        session = app.db.session
        try:
            resolved_cases(app, host, session, 3)
            assert type(outbox.finisher_for(session, FollowUp)) is outbox.Finisher
            result = send_due_followups()
            assert (result.sent, result.failed) == (3, 0)
            assert {r.status for r in session.query(FollowUp)} == {"sent"}
        finally:
            session.remove()
            app.recovery.drop_all()
            app.db.engine.dispose()
    wait_for(smtp_server.messages, 3)
    assert len(smtp_server.messages) == 3

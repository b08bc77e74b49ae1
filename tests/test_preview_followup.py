"""``flask recovery preview-followup BOOKING_ID``: the check-in a booking would get, printed
now (also when it is due only tomorrow), with nothing sent and nothing stored."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from flask_recovery import domain
from flask_recovery.followups import plan_followups
from flask_recovery.models import FollowUp, Unsubscribe, metadata, utcnow

from .conftest import running_smtp

CONFIG = {
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_DELAY": timedelta(hours=24),
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
}
pytestmark = pytest.mark.config(**CONFIG)
CHANGE = "We now leave a buffer between visits."


class CountingSink:
    """An SMTP handler that counts every greeting (a connection that talks) and every message."""

    def __init__(self) -> None:
        self.greetings = 0
        self.messages = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.greetings += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.messages += 1
        return "250 OK"


@pytest.fixture
def sink(app):
    """A real SMTP server the app's mail points at; counts what reaches it."""
    handler = CountingSink()
    with running_smtp(handler) as port:
        state = app.extensions["mail"]
        state.server, state.port = "127.0.0.1", port
        yield handler


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every ``recovery_`` table, in key order."""
    with app.app_context(), app.db.engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables
        }


def resolved_case(session, host, booking_id="b1", **booking):
    """A visit that ended an hour ago, a late start recorded and resolved just now."""
    visit = host.add_booking(booking_id, **booking)
    admin = host.login("admin")
    case = domain.record_incident(
        session,
        visit,
        admin,
        category="late",
        severity="major",
        description="internal: the master took a private call",
        corrective_action=CHANGE,
    )
    domain.resolve_incident(session, case.id, admin)
    session.commit()
    return visit, case


def preview(runner, *args):
    return runner.invoke(args=["recovery", "preview-followup", *args])


def test_tomorrows_check_in_is_printed_and_nothing_is_sent_or_stored(app, host, session, runner, sink):
    resolved_case(session, host, client_name="Анна Смирнова", service="Стрижка")
    before = snapshot(app)

    result = preview(runner, "b1")

    assert result.exit_code == 0, result.output
    out = result.output
    assert "nothing was sent or stored" in out
    # resolved now + 24 h: due tomorrow, and the command says so
    assert re.search(r"^Due: +\d{4}-\d\d-\d\d \d\d:\d\d UTC \(in 2[34] h \d+ min\): ", out, re.M), out
    assert "State:    not planned yet" in out
    assert "From:     Velvet salon <hello@salon.test>" in out
    assert "To:       Анна Смирнова <anna@client.test>" in out
    assert "Subject:  Анна, как вы после визита к нам?" in out
    assert "List-Unsubscribe: <https://salon.example.com/recovery/followups/{token}/unsubscribe>" in out
    # the text part, in the client's language, with what will change (never the internal note)
    assert "Здравствуйте, Анна!" in out and "(Стрижка)" in out and f"Что изменим: {CHANGE}" in out
    assert "private call" not in out
    assert "Всё хорошо: https://salon.example.com/recovery/followups/{token}/answer/good" in out
    assert "Всё ещё не так: https://salon.example.com/recovery/followups/{token}/answer/not_right" in out
    assert "  All good:        https://salon.example.com/recovery/followups/{token}/answer/good" in out
    assert "  Unsubscribe:     https://salon.example.com/recovery/followups/{token}/unsubscribe" in out

    assert sink.greetings == 0 and sink.messages == 0  # no SMTP conversation at all
    assert snapshot(app) == before  # no row added or changed in any recovery_ table


def test_a_planned_check_in_is_previewed_from_its_row_unchanged(app, host, session, runner, sink):
    resolved_case(session, host)
    plan_followups(session)
    session.commit()
    row = session.scalars(sa.select(FollowUp)).one()
    assert row.status == "scheduled"
    before = snapshot(app)

    result = preview(runner, "b1", "--locale", "en")

    assert result.exit_code == 0, result.output
    assert "State:    planned" in result.output
    assert "Subject:  How are you after your visit, Anna?" in result.output
    assert f"What will change: {CHANGE}" in result.output
    assert sink.greetings == 0 and sink.messages == 0
    assert snapshot(app) == before


def test_a_due_check_in_says_the_next_run_sends_it(app, host, session, runner):
    app.config["RECOVERY_FOLLOWUP_DELAY"] = timedelta(0)
    resolved_case(session, host)
    result = preview(runner, "b1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^Due: +now \(since .*\): the next send-followups run sends it$", result.output, re.M)


def test_the_reminder_after_an_unanswered_check_in(app, host, session, runner, sink):
    app.config["RECOVERY_FOLLOWUP_REMINDER_AFTER"] = timedelta(days=3)
    visit, case = resolved_case(session, host, locale="en")
    session.add(
        FollowUp(
            booking_id=visit.id,
            client_id=visit.client_id,
            incident_id=case.id,
            kind="checkin",
            status="sent",
            due_at=utcnow() - timedelta(days=1),
            sent_at=utcnow() - timedelta(days=1),
            locale="en",
            email=visit.client_email,
            client_name=visit.client_name,
        )
    )
    session.commit()
    before = snapshot(app)

    result = preview(runner, "b1", "--kind", "reminder")

    assert result.exit_code == 0, result.output
    assert "Preview of the reminder for booking b1 (case 1: late, resolved)" in result.output
    assert "We wrote to you a few days ago, and we would still love to hear from you." in result.output
    assert re.search(r"^Due: +.*\(in 1 d 2[23] h\)", result.output, re.M), result.output
    assert "only if the client has not answered the check-in by then" in result.output
    assert sink.messages == 0 and snapshot(app) == before


def test_an_unknown_booking_is_a_usage_error_naming_it(app, runner):
    result = preview(runner, "b-nope")
    assert result.exit_code == 2
    assert "no booking 'b-nope'" in result.output


def test_an_unsupported_locale_is_refused(app, host, session, runner):
    resolved_case(session, host)
    result = preview(runner, "b1", "--locale", "de")
    assert result.exit_code == 2
    assert "'de' is not one of RECOVERY_LOCALES (en, ru)" in result.output


def _cancelled(app, session, host):
    resolved_case(session, host, status="cancelled")


def _no_show(app, session, host):
    resolved_case(session, host, status="no_show")


def _conduct(app, session, host):
    visit = host.add_booking("b1")
    domain.record_incident(
        session,
        visit,
        host.login("admin"),
        category="client_conduct",
        severity="major",
        description="shouted at the master",
        conduct=True,
    )
    session.commit()


def _no_address(app, session, host):
    resolved_case(session, host, client_email=None)


def _unsubscribed(app, session, host):
    resolved_case(session, host)
    session.add(Unsubscribe(client_id="c1"))
    session.commit()


def _no_incident(app, session, host):
    host.add_booking("b1")


def _already_cancelled_row(app, session, host):
    _unsubscribed(app, session, host)
    plan_followups(session)  # the planner stores a cancelled row for an unsubscribed client
    session.commit()


def _recent_check_in(app, session, host):
    app.config["RECOVERY_FOLLOWUP_MIN_INTERVAL"] = timedelta(days=30)
    resolved_case(session, host)
    session.add(
        FollowUp(
            booking_id="b0",
            client_id="c1",
            kind="checkin",
            status="sent",
            due_at=utcnow(),
            sent_at=utcnow(),
            locale="ru",
        )
    )
    session.commit()


@pytest.mark.parametrize(
    "setup, reason",
    [
        (_cancelled, "visit cancelled"),
        (_no_show, "visit no_show"),
        (_conduct, "case 1 is a client-conduct case: no check-in follows one"),
        (_no_address, "no e-mail address"),
        (_unsubscribed, "unsubscribed"),
        (
            _no_incident,
            "no incident is recorded on this visit, and check-ins follow resolved cases only "
            "(RECOVERY_FOLLOWUP_ALL_VISITS is off)",
        ),
        (_already_cancelled_row, "the check-in was cancelled: unsubscribed"),
        (_recent_check_in, "another check-in within RECOVERY_FOLLOWUP_MIN_INTERVAL"),
    ],
)
def test_a_booking_without_a_check_in_says_why(app, host, session, runner, sink, setup, reason):
    setup(app, session, host)
    before = snapshot(app)
    result = preview(runner, "b1")
    assert result.exit_code == 1, result.output
    assert f"Error: booking 'b1' gets no check-in: {reason}" in result.output
    assert sink.greetings == 0 and snapshot(app) == before

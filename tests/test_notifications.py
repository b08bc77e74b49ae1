"""Staff mail from the outbox: a request for approval reaches the managers once."""

import smtplib
import time

import pytest

from flask_recovery.models import Notification


def _request(client, host):
    host.login("admin")
    incident = client.post(
        "/recovery/api/bookings/b1/incidents",
        json={"category": "billing", "severity": "major", "description": "charged twice"},
    )
    response = client.post(
        f"/recovery/api/incidents/{incident.get_json()['id']}/compensations",
        json={"kind": "refund", "amount": 90000, "note": "Client paid twice <b>really</b>"},
    )
    assert response.get_json()["status"] == "pending_approval"


def _wait(messages, n):
    deadline = time.monotonic() + 5
    while len(messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def point_mail_at(app, port):
    """Flask-Mail reads MAIL_* once at init; aim the app's mail state at ``port``."""
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", port, "desk@salon.test"


@pytest.fixture
def mail_app(app, smtp_server):
    point_mail_at(app, smtp_server.port)
    app.config.update(
        RECOVERY_MANAGER_EMAILS=["boss@salon.test", "deputy@salon.test"], RECOVERY_BASE_URL="https://salon.example.com"
    )
    return app


def test_request_for_approval_mails_the_managers_once(mail_app, client, host, booking, runner, smtp_server, session):
    _request(client, host)
    assert smtp_server.messages == []  # nothing is sent inside the request
    dry = runner.invoke(args=["recovery", "send-notifications", "--dry-run"])
    assert "1 staff mails due" in dry.output
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert result.exit_code == 0 and "sent 1" in result.output
    _wait(smtp_server.messages, 1)
    (message,) = smtp_server.messages
    assert sorted(message["To"].split(", ")) == ["boss@salon.test", "deputy@salon.test"]
    assert message["Subject"].startswith("Approval needed: Refund")
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Client paid twice <b>really</b>" in text
    assert "&lt;b&gt;really&lt;/b&gt;" in html and "<b>really</b>" not in html
    assert "https://salon.example.com/recovery/approvals" in text
    again = runner.invoke(args=["recovery", "send-notifications"])
    assert "sent 0" in again.output
    assert len(smtp_server.messages) == 1
    assert session.query(Notification).one().status == "sent"


def test_no_manager_emails_skips(app, client, host, booking, runner, session):
    _request(client, host)
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert "skipped 1" in result.output
    assert session.query(Notification).one().status == "skipped"


def test_unreachable_server_retries_later(app, client, host, booking, runner, session):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    point_mail_at(app, port)
    app.config.update(RECOVERY_MANAGER_EMAILS=["boss@salon.test"])
    _request(client, host)
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert result.exit_code == 0 and "retry later 1" in result.output
    session.expire_all()
    row = session.query(Notification).one()
    assert row.status == "pending" and row.attempts == 1 and "connection" in row.last_error


def test_permanent_refusal_is_marked_failed(mail_app, client, host, booking, runner, session, monkeypatch):
    _request(client, host)
    from flask_recovery.mail import TimeoutConnection

    def refuse(self, message, envelope_from=None, **kwargs):
        raise smtplib.SMTPDataError(554, b"rejected")

    monkeypatch.setattr(TimeoutConnection, "send", refuse)
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert "failed 1" in result.output
    session.expire_all()
    assert session.query(Notification).one().status == "failed"

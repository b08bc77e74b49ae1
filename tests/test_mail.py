"""The mail seam: Flask-Mail set up from MAIL_* (or the host's), real SMTP, a socket timeout."""

import smtplib
import socket
import threading
import time
from email import message_from_bytes, policy

import pytest
from flask import Flask
from flask_mail import Mail, Message
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import ConfigError, Recovery
from flask_recovery.mail import failure_reason

from .conftest import make_app, running_smtp


def _app(tmp_path, **config):
    return make_app(f"sqlite:///{tmp_path / 'm.sqlite'}", {"MAIL_DEFAULT_SENDER": "desk@salon.test", **config})


def test_mail_from_mail_keys_reaches_a_real_smtp_server(tmp_path, smtp_server):
    app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    with app.app_context():
        with app.recovery.mailer.connection() as conn:
            for n in range(3):
                conn.send(
                    Message(f"Check-in {n}", recipients=[f"client{n}@client.test"], body="Hello", html="<p>Hi</p>")
                )
    deadline = time.monotonic() + 5
    while len(smtp_server.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    subjects = sorted(m["Subject"] for m in smtp_server.messages)
    assert subjects == ["Check-in 0", "Check-in 1", "Check-in 2"]
    first = smtp_server.messages[0]
    assert first["From"] == "desk@salon.test"
    assert first.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in first.iter_parts()] == ["text/plain", "text/html"]


def test_the_hosts_own_mail_is_reused(tmp_path, smtp_server):
    app = Flask("host_with_mail")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'h.sqlite'}",
        SECRET_KEY="k",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        MAIL_DEFAULT_SENDER="host@salon.test",
    )
    mail = Mail(app)
    state = app.extensions["mail"]
    db = SQLAlchemy(app)
    Recovery(app, db=db)
    assert app.extensions["recovery"].mail is state
    assert mail is not None
    with app.app_context():
        app.extensions["recovery"].recovery.mailer.send(Message("Hi", recipients=["a@client.test"], body="x"))
    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert smtp_server.messages[0]["From"] == "host@salon.test"


def test_a_stalled_smtp_server_times_out(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=port, RECOVERY_SMTP_TIMEOUT=0.5)
    started = time.monotonic()
    with app.app_context(), pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        app.recovery.mailer.send(Message("Hi", recipients=["a@client.test"], body="x"))
    assert time.monotonic() - started < 5
    listener.close()
    for conn, _ in accepted:
        conn.close()


def test_a_refused_connection_fails_fast(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    with app.app_context(), pytest.raises(ConnectionRefusedError):
        app.recovery.mailer.send(Message("Hi", recipients=["a@client.test"], body="x"))


@pytest.mark.parametrize("value", [0, -1, "10", True, 1000])
def test_smtp_timeout_is_validated(tmp_path, value):
    with pytest.raises(ConfigError, match="RECOVERY_SMTP_TIMEOUT"):
        _app(tmp_path, RECOVERY_SMTP_TIMEOUT=value)


def test_a_hook_runs_before_each_message_goes_and_can_stop_it(tmp_path, smtp_server):
    """The dispatcher's hook (it waits for the previous mail's "sent" mark there): it runs
    after the previous message was accepted and before this one's content goes; if it
    fails, this message is abandoned (RSET: the server never has it), the error surfaces,
    and the connection is still good for the next message."""
    app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    arrived_before = []

    def hook():
        arrived_before.append(len(smtp_server.messages))
        if len(arrived_before) == 3:
            raise RuntimeError("stop here")

    failed = []
    with app.app_context(), app.recovery.mailer.connection() as conn:
        conn.before_send = hook
        for n in range(5):
            try:
                conn.send(Message(f"Check-in {n}", recipients=[f"client{n}@client.test"], body="Hello"))
            except RuntimeError as error:
                failed.append((n, str(error)))
    time.sleep(0.3)
    assert failed == [(2, "stop here")]
    assert arrived_before == [0, 1, 2, 2, 3]
    assert [m["Subject"] for m in smtp_server.messages] == ["Check-in 0", "Check-in 1", "Check-in 3", "Check-in 4"]


class _Sessions:
    """An SMTP sink that counts the connections (EHLO greetings) it saw."""

    def __init__(self) -> None:
        self.greetings = 0
        self.subjects: list[str] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd API)
        self.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        raw = envelope.original_content or envelope.content
        self.subjects.append(message_from_bytes(raw, policy=policy.default)["Subject"])
        return "250 OK"


def test_mail_max_emails_reconnects_between_messages(tmp_path):
    """Flask-Mail's MAIL_MAX_EMAILS: a new connection after every N messages, none lost."""
    sink = _Sessions()
    with running_smtp(sink) as port:
        app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_MAX_EMAILS=2)
        with app.app_context(), app.recovery.mailer.connection() as conn:
            for n in range(5):
                conn.send(Message(f"Check-in {n}", recipients=[f"client{n}@client.test"], body="Hello"))
        deadline = time.monotonic() + 5
        while len(sink.subjects) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sink.subjects == [f"Check-in {n}" for n in range(5)]
    assert sink.greetings == 3


@pytest.mark.parametrize(
    ("error", "reason", "permanent"),
    [
        (
            smtplib.SMTPRecipientsRefused(
                {"=?utf-8?b?0JDQvdC90LA=?= <anna@client.test>": (550, b"5.1.1 <anna@client.test>: User unknown")}
            ),
            "550 5.1.1 recipient refused",
            True,
        ),
        (
            smtplib.SMTPRecipientsRefused({"anna@client.test": (451, b"4.7.1 anna@client.test greylisted")}),
            "451 4.7.1 recipient deferred",
            False,
        ),
        (
            smtplib.SMTPDataError(554, b"5.7.1 Message from Anna Smirnova <anna@client.test> rejected"),
            "554 5.7.1 message refused",
            True,
        ),
        (smtplib.SMTPDataError(452, b"Insufficient storage"), "452 message deferred", False),
        (
            smtplib.SMTPSenderRefused(553, b"5.1.8 <desk@salon.test> bad sender", "desk@salon.test"),
            "553 5.1.8 sender refused",
            True,
        ),
        (
            smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server"),
            "address: needs SMTPUTF8, which the server does not offer",
            True,
        ),
    ],
    ids=["refused", "deferred", "data-refused", "data-deferred", "sender", "smtputf8"],
)
def test_a_failure_keeps_the_code_and_a_fixed_phrase_only(error, reason, permanent):
    assert failure_reason(error) == (reason, permanent)
    assert "anna" not in reason.lower() and "@" not in reason

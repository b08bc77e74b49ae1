"""The mail seam: Flask-Mail set up from MAIL_* (or the host's), real SMTP, a socket timeout."""

import smtplib
import socket
import threading
import time

import pytest
from flask import Flask
from flask_mail import Mail, Message
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import ConfigError, Recovery

from .conftest import make_app


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
    assert first.get_content_type() == "multipart/mixed" or first.is_multipart()


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
    """The dispatcher's hook (it commits the previous mail's "sent" mark there): it runs
    after the previous message was accepted and before this one's content leaves; if it
    fails, this message is abandoned (the server never accepts it) and the error surfaces."""
    app = _app(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    arrived_before = []

    def hook():
        arrived_before.append(len(smtp_server.messages))
        if len(arrived_before) == 3:
            raise RuntimeError("stop here")

    started = time.monotonic()
    with app.app_context(), pytest.raises(RuntimeError, match="stop here"):
        with app.recovery.mailer.connection() as conn:
            conn.before_data = hook
            for n in range(4):
                conn.send(Message(f"Check-in {n}", recipients=[f"client{n}@client.test"], body="Hello"))
    assert time.monotonic() - started < 5  # no QUIT into a half-sent message
    time.sleep(0.3)
    assert arrived_before == [0, 1, 2]
    assert [m["Subject"] for m in smtp_server.messages] == ["Check-in 0", "Check-in 1"]

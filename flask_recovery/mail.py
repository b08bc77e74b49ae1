"""The one seam through which the extension sends mail.

:class:`Mailer` wraps the app's Flask-Mail with a socket timeout (Flask-Mail sets none:
a stalled SMTP server would hang a worker forever) and one reused connection per batch.
A host routes mail elsewhere by giving ``Recovery(mailer=...)`` any object with the same
``connection()`` / ``send()`` methods.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import current_app
from flask_mail import Connection, Message

from .config import key


class _GatedData:
    """Calls ``before_data`` (when set) just before each message's content goes to the server.

    The server accepts a message only at its answer to the content's end, so whatever
    ``before_data`` waits for has happened before the server can accept the message. The
    dispatcher uses it to have the previous message's "sent" mark committed before this
    message goes, while the commit overlaps this message's MIME building and its envelope
    (``MAIL``, ``RCPT``, ``DATA``).
    """

    before_data: Callable[[], None] | None = None

    def data(self, msg):
        """smtplib's ``DATA``, with ``before_data`` between the server's 354 and the content."""
        if self.before_data is None:
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
        content = re.sub(rb"(?m)^\.", b"..", msg)
        if content[-2:] != b"\r\n":
            content += b"\r\n"
        try:
            self.before_data()
        except BaseException:
            self.close()  # the server is reading the content now: only hanging up aborts the message
            raise
        self.send(content + b".\r\n")
        return self.getreply()


class _SMTP(_GatedData, smtplib.SMTP):
    pass


class _SMTP_SSL(_GatedData, smtplib.SMTP_SSL):  # noqa: N801 (smtplib's name)
    pass


class TimeoutConnection(Connection):
    """A Flask-Mail connection whose socket gives up after ``RECOVERY_SMTP_TIMEOUT`` seconds.

    ``before_data``: an optional callable run before each message's content is sent (see
    :class:`_GatedData`); an exception it raises aborts that message (the connection is
    closed, so the server discards it) and propagates.
    """

    def __init__(self, mail, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout
        self._before_data: Callable[[], None] | None = None

    @property
    def before_data(self) -> Callable[[], None] | None:
        return self._before_data

    @before_data.setter
    def before_data(self, hook: Callable[[], None] | None) -> None:
        self._before_data = hook
        if self.host is not None:
            self.host.before_data = hook

    def __exit__(self, exc_type, exc_value, tb) -> None:
        if self.host is not None and self.host.sock is None:
            return  # hung up mid-message on purpose (see _GatedData): nobody to say QUIT to
        super().__exit__(exc_type, exc_value, tb)

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        if mail.use_ssl:
            host: _SMTP | _SMTP_SSL = _SMTP_SSL(mail.server, mail.port, timeout=self.timeout)
        else:
            host = _SMTP(mail.server, mail.port, timeout=self.timeout)
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        # Flask-Mail reconnects after MAIL_MAX_EMAILS messages: the new host keeps the hook
        host.before_data = getattr(self, "_before_data", None)
        return host


class Mailer:
    """Send :class:`flask_mail.Message` objects through the current app's Flask-Mail."""

    @contextmanager
    def connection(self) -> Iterator[TimeoutConnection]:
        """One SMTP connection (with a timeout) for a batch: ``conn.send(message)``."""
        state = current_app.extensions["mail"]
        with TimeoutConnection(state, current_app.config[key("SMTP_TIMEOUT")]) as conn:
            yield conn

    def send(self, message: Message) -> None:
        """Send one message on a connection of its own."""
        with self.connection() as conn:
            conn.send(message)

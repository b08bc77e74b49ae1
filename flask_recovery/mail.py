"""The one seam through which the extension sends mail.

:class:`Mailer` wraps the app's Flask-Mail with a socket timeout (Flask-Mail sets none:
a stalled SMTP server would hang a worker forever) and one reused connection per batch.
A host routes mail elsewhere by giving ``Recovery(mailer=...)`` any object with the same
``connection()`` / ``send()`` methods.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from flask_mail import Connection, Message

from .config import key


class TimeoutConnection(Connection):
    """A Flask-Mail connection whose socket gives up after ``RECOVERY_SMTP_TIMEOUT`` seconds."""

    def __init__(self, mail, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        if mail.use_ssl:
            host: smtplib.SMTP | smtplib.SMTP_SSL = smtplib.SMTP_SSL(mail.server, mail.port, timeout=self.timeout)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self.timeout)
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
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

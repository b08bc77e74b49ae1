"""The one seam through which the extension sends mail.

:class:`Mailer` wraps the app's Flask-Mail with a socket timeout (Flask-Mail sets none:
a stalled SMTP server would hang a worker forever) and one reused connection per batch,
whose messages are serialized by :mod:`flask_recovery.mime` (the bytes Flask-Mail would
send, built with a fraction of its work).
A host routes mail elsewhere by giving ``Recovery(mailer=...)`` any object with the same
``connection()`` / ``send()`` methods.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from flask import current_app
from flask_mail import BadHeaderError, Connection, Message, email_dispatched, sanitize_addresses

from .config import key
from .mime import message_bytes, sanitized_address


class _GatedData:
    """Calls ``before_data`` (when set) just before each message's content goes to the server,
    and ``after_data`` (when set) just after, while the server is still reading it.

    The server accepts a message only at its answer to the content's end, so whatever
    ``before_data`` waits for has happened before the server can accept the message. The
    dispatcher uses it to have the previous message's "sent" mark committed before this
    message goes, while the commit overlaps this message's envelope (``MAIL``, ``RCPT``,
    ``DATA``). ``after_data`` gets the time the server takes to answer: the connection
    serializes the next message there (:meth:`TimeoutConnection.send`'s ``next_message``).
    It must not raise.
    """

    before_data: Callable[[], None] | None = None
    after_data: Callable[[], None] | None = None

    def data(self, msg):
        """smtplib's ``DATA``, with ``before_data`` between the server's 354 and the content
        and ``after_data`` between the content and the server's answer."""
        if self.before_data is None and self.after_data is None:
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
        if self.before_data is not None:
            try:
                self.before_data()
            except BaseException:
                self.close()  # the server is reading the content now: only hanging up aborts the message
                raise
        self.send(content + b".\r\n")
        if self.after_data is not None:
            self.after_data()
        return self.getreply()


class _SMTP(_GatedData, smtplib.SMTP):
    pass


class _SMTP_SSL(_GatedData, smtplib.SMTP_SSL):  # noqa: N801 (smtplib's name)
    pass


class TimeoutConnection(Connection):
    """A Flask-Mail connection whose socket gives up after ``RECOVERY_SMTP_TIMEOUT`` seconds.

    ``before_data``: an optional callable run before each message's content is sent (see
    :class:`_GatedData`); an exception it raises aborts that message (the connection is
    closed, so the server discards it) and propagates. :meth:`send` takes the message to
    come (``next_message``) and serializes it while the server reads the one it sends.
    """

    def __init__(self, mail, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout
        self._before_data: Callable[[], None] | None = None
        self._prepared: tuple[Message, list[str], bytes] | None = None

    @property
    def before_data(self) -> Callable[[], None] | None:
        return self._before_data

    @before_data.setter
    def before_data(self, hook: Callable[[], None] | None) -> None:
        self._before_data = hook
        if self.host is not None:
            self.host.before_data = hook

    def send(
        self,
        message: Message,
        envelope_from: str | tuple[str, str] | None = None,
        *,
        next_message: Message | None = None,
    ) -> None:
        """Flask-Mail's ``Connection.send``, with the message serialized by
        :func:`flask_recovery.mime.message_bytes` (the bytes ``message.as_bytes()`` gives,
        built with less work) and the sender's address sanitized once per sender.

        ``next_message``: the message the caller sends next on this connection, if it knows
        it (and changes it no more): it is serialized while the server reads this one, so
        its own ``send`` finds it ready.
        """
        if not message.send_to:
            raise AssertionError("No recipients have been added")
        if not message.sender:
            raise AssertionError("The message does not specify a sender and a default sender has not been configured")
        if message.has_bad_headers():
            raise BadHeaderError
        if message.date is None:
            message.date = time.time()
        if self.host is not None:
            recipients, content = self._serialized(message)
            host = self.host
            host.after_data = None if next_message is None else partial(self._prepare, next_message)
            try:
                host.sendmail(
                    sanitized_address(envelope_from or message.sender),
                    recipients,
                    content,
                    message.mail_options,
                    message.rcpt_options,
                )
            finally:
                host.after_data = None
        email_dispatched.send(current_app._get_current_object(), message=message)
        self.num_emails += 1
        if self.num_emails == self.mail.max_emails:
            self.num_emails = 0
            if self.host:
                self.host.quit()
                self.host = self.configure_host()

    def _prepare(self, message: Message) -> None:
        """Serialize ``message`` ahead of its ``send`` (an error waits for that ``send``)."""
        try:
            if message.date is None:
                message.date = time.time()
            self._prepared = (message, *self._serialize(message))
        except Exception:
            self._prepared = None

    def _serialized(self, message: Message) -> tuple[list[str], bytes]:
        """The envelope's recipients and the content of ``message``: from :meth:`_prepare`, or now."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] is message:
            return prepared[1], prepared[2]
        return self._serialize(message)

    @staticmethod
    def _serialize(message: Message) -> tuple[list[str], bytes]:
        return list(sanitize_addresses(message.send_to)), message_bytes(message)

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

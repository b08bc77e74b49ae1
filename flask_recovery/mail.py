"""The one seam through which the extension sends mail.

:class:`Mailer` wraps the app's Flask-Mail: one connection per batch
(:class:`TimeoutConnection`, a Flask-Mail ``Connection`` whose socket gives up after
``RECOVERY_SMTP_TIMEOUT`` seconds: Flask-Mail sets none, and a stalled server would hang
a worker forever), each message written by :mod:`flask_recovery.mime` (no line over 998
octets) and handed to ``smtplib.SMTP.sendmail``. A host routes mail elsewhere by giving
``Recovery(mailer=...)`` any object with the same ``connection()`` / ``send()`` methods.

:func:`failure_reason` is what the outboxes store and show of a failed send: the SMTP code
and a fixed phrase, never the server's text or the address (a refusal quotes the
recipient, and ``last_error`` is read by staff).
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import current_app
from flask_mail import BadHeaderError, Connection, Message, email_dispatched

from .config import key
from .mime import UnsendableAddress, envelope, message_bytes

__all__ = ["MESSAGE_FAILURES", "Mailer", "TimeoutConnection", "failure_reason"]

#: What a send raises for that message alone (the connection stays usable): a refusal by
#: the server, or a message or address that cannot be written (:mod:`flask_recovery.mime`).
MESSAGE_FAILURES = (
    smtplib.SMTPResponseException,
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPNotSupportedError,
    BadHeaderError,
    UnicodeError,
    ValueError,
)
#: RFC 3463's enhanced status code at the start of a reply (``5.1.1``): a code, no personal data
_ENHANCED = re.compile(rb"\s*([245]\.\d{1,3}\.\d{1,3})(?!\S)")


class TimeoutConnection(Connection):
    """A Flask-Mail connection whose socket gives up after ``timeout`` seconds.

    :meth:`send` writes each message with :func:`flask_recovery.mime.message_bytes` and
    sends it to the bare addresses of its envelope through smtplib's public SMTP commands.
    ``before_send``: an optional callable run once the server has taken the message's
    envelope and before its content goes (the dispatcher waits there for the previous
    message's "sent" mark to be committed, while this message was being written and its
    envelope sent); an exception it raises abandons that message (``RSET``: the server
    never has it), and propagates.
    """

    def __init__(self, mail, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout
        self.before_send: Callable[[], None] | None = None

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        """Flask-Mail's ``configure_host``, with the socket timeout."""
        mail = self.mail
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=self.timeout)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self.timeout)
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host

    def send(self, message: Message, envelope_from: str | tuple[str, str] | None = None) -> None:
        """Flask-Mail's ``Connection.send`` (the same checks, ``email_dispatched`` signal and
        ``MAIL_MAX_EMAILS`` reconnection), with the message written by :mod:`flask_recovery.mime`
        and sent to the bare addresses of its envelope.

        8-bit text goes only to a server that announces 8BITMIME, declared as
        ``BODY=8BITMIME``; to any other, every non-ASCII part is encoded.
        """
        if not message.send_to:
            raise AssertionError("No recipients have been added")
        if not message.sender:
            raise AssertionError("The message does not specify a sender and a default sender has not been configured")
        if message.has_bad_headers():
            raise BadHeaderError
        if message.date is None:
            message.date = time.time()
        if self.mail.max_emails and self.num_emails >= self.mail.max_emails and self.host is not None:
            # Flask-Mail reconnects right after the message that reached MAIL_MAX_EMAILS; here
            # it is before the next one, so a failed reconnection is that message's, unsent
            self.num_emails = 0
            self.host.quit()
            self.host = self.configure_host()
        host = self.host
        if host is not None:
            host.ehlo_or_helo_if_needed()
            eight_bit = host.has_extn("8bitmime")
            content = message_bytes(message, eight_bit=eight_bit)
            sender, recipients = envelope(message, envelope_from)
            options = list(message.mail_options)
            if eight_bit and not content.isascii() and not any(o.upper().startswith("BODY=") for o in options):
                options.append("BODY=8BITMIME")
            self._transmit(host, sender, recipients, content, options, list(message.rcpt_options))
        email_dispatched.send(current_app._get_current_object(), message=message)
        self.num_emails += 1

    def _transmit(
        self,
        host: smtplib.SMTP,
        sender: str,
        recipients: list[str],
        content: bytes,
        mail_options: list[str],
        rcpt_options: list[str],
    ) -> dict[str, tuple[int, bytes]]:
        """``host.sendmail(...)``, step by step through smtplib's public ``mail``, ``rcpt``,
        ``data`` and ``rset``, with :attr:`before_send` between the envelope and the content.

        The same answers raise the same errors as ``sendmail`` (``SMTPSenderRefused``,
        ``SMTPRecipientsRefused`` when every recipient is refused, ``SMTPDataError``), and it
        returns the refused recipients as ``sendmail`` does. Why not ``sendmail`` itself: the
        server can accept the message only at the end of its content, so what
        ``before_send`` waits for (the previous message's "sent" mark) may go on during the
        envelope's round trips; with ``sendmail`` it would have to end before them
        (``benchmarks/followups.py``: 0.61 of the raw Flask-Mail loop on SQLite that way).
        If ``before_send`` raises, the envelope is reset (the server has taken no message).
        """
        options = list(mail_options)
        if host.does_esmtp and host.has_extn("size"):
            options.insert(0, f"size={len(content)}")
        code, answer = host.mail(sender, options if host.does_esmtp else [])
        if code != 250:
            self._reset(host, code)
            raise smtplib.SMTPSenderRefused(code, answer, sender)
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, answer = host.rcpt(recipient, rcpt_options)
            if code not in (250, 251):
                refused[recipient] = (code, answer)
            if code == 421:
                host.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        if len(refused) == len(recipients):
            self._reset(host, 0)
            raise smtplib.SMTPRecipientsRefused(refused)
        if self.before_send is not None:
            try:
                self.before_send()
            except BaseException:
                self._reset(host, 0)
                raise
        code, answer = host.data(content)
        if code != 250:
            self._reset(host, code)
            raise smtplib.SMTPDataError(code, answer)
        return refused

    @staticmethod
    def _reset(host: smtplib.SMTP, code: int) -> None:
        """After a refusal: hang up on a 421 (the server is closing), else ``RSET``."""
        if code == 421:
            host.close()
            return
        try:
            host.rset()
        except smtplib.SMTPServerDisconnected:
            pass


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


def _phrase(code: int, refused: str, deferred: str) -> str:
    return refused if code >= 500 else deferred


def failure_reason(error: BaseException) -> tuple[str, bool]:
    """``(reason, permanent)`` for a send that raised ``error``.

    The reason is what an outbox row keeps in ``last_error`` and staff read: the SMTP
    code, the enhanced status code when the server gave one, and a fixed phrase (``550
    5.1.1 recipient refused``), never the server's own text nor the address, which a
    refusal usually quotes. ``permanent``: a 5xx answer, or a message or address that can
    never be sent; anything else is worth a retry.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values()) or [(550, b"")]
        code, text = max(answers, key=lambda answer: answer[0] if isinstance(answer[0], int) else 0)
        permanent = all(isinstance(c, int) and 500 <= c < 600 for c, _ in answers)
        return _coded(code, text, _phrase(code, "recipient refused", "recipient deferred")), permanent
    if isinstance(error, smtplib.SMTPSenderRefused):
        code, text = error.smtp_code, error.smtp_error
        return _coded(code, text, _phrase(code, "sender refused", "sender deferred")), code >= 500
    if isinstance(error, smtplib.SMTPDataError):
        code, text = error.smtp_code, error.smtp_error
        return _coded(code, text, _phrase(code, "message refused", "message deferred")), code >= 500
    if isinstance(error, smtplib.SMTPResponseException):
        code, text = error.smtp_code, error.smtp_error
        return _coded(code, text, f"server answer ({type(error).__name__})"), 500 <= code < 600
    if isinstance(error, UnsendableAddress):
        return "address: not a mailbox the server can deliver to", True
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return "address: needs SMTPUTF8, which the server does not offer", True
    if isinstance(error, BadHeaderError):
        return "message: a header with a line break", True
    if isinstance(error, UnicodeError | ValueError):
        return f"message: cannot be written ({type(error).__name__})", True
    return f"connection: {type(error).__name__}: {error}", False


def _coded(code: object, text: object, phrase: str) -> str:
    raw = text if isinstance(text, bytes) else str(text or "").encode("utf-8", "replace")
    enhanced = _ENHANCED.match(raw)
    parts = [str(code) if isinstance(code, int) else "SMTP", enhanced.group(1).decode() if enhanced else "", phrase]
    return " ".join(part for part in parts if part)

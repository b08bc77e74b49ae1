"""No line on the wire longer than RFC 5322's 998 octets, whatever staff typed.

A 545-character Cyrillic corrective action is 1,090 octets of UTF-8 on one line: written as
8-bit text as it is (what Flask-Mail itself does), a strict server (aiosmtpd's default,
Exim's) answers ``500 Line too long`` and the check-in is failed for good. Here a real
aiosmtpd server with its default settings receives every mail; the raw lines are counted
and the decoded text must hold the whole corrective action.
"""

from __future__ import annotations

import html
import threading
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from flask_mail import Message

from flask_recovery import domain
from flask_recovery.followup_mail import render_followup
from flask_recovery.models import FollowUp

from .conftest import running_smtp

CONFIG = {
    "MAIL_DEFAULT_SENDER": "Velvet salon <hello@salon.test>",
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
}
pytestmark = pytest.mark.config(**CONFIG)

#: 545 characters of Cyrillic on one line, as a front desk types it
CORRECTIVE_ACTION = (
    "Мы поговорили с мастером и договорились, что теперь перед каждым окрашиванием она "
    "обязательно делает пробную прядь и показывает результат клиентке, а администратор за день "
    "до визита звонит и уточняет желаемый оттенок, длину и все пожелания; кроме того, мы "
    "обновили карту клиента, записали подобранную формулу краски и время выдержки, чтобы "
    "следующий мастер мог повторить её без ошибок, и добавили к записи пятнадцать минут "
    "запаса, чтобы никто не торопился и не переживал из-за опоздания предыдущей гостьи салона"
    ", всё уже действует с понедельника"
)


class RawSink:
    """aiosmtpd handler keeping what arrived: the raw bytes, the envelope, the MAIL options."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.mails.append(
                (list(envelope.rcpt_tos), list(envelope.mail_options), envelope.original_content or envelope.content)
            )
        return "250 OK"

    def wait(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.mails) < n and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def strict_sink(app):
    """A real aiosmtpd server with its default settings (lines longer than 998 octets refused)."""
    sink = RawSink()
    with running_smtp(sink) as port:
        state = app.extensions["mail"]
        state.server, state.port = "127.0.0.1", port
        yield sink


def raw_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n")


def texts(raw: bytes) -> tuple[str, str]:
    parsed = message_from_bytes(raw, policy=policy.default)
    return parsed.get_body(("plain",)).get_content(), parsed.get_body(("html",)).get_content()


def resolved_case(session, host, corrective_action: str, locale: str = "ru"):
    booking = host.add_booking("b1", client_email="anna@client.test", client_name="Анна Смирнова", locale=locale)
    admin = host.STAFF["admin"]
    incident = domain.record_incident(
        session,
        booking,
        admin,
        category="result",
        severity="major",
        description="Оттенок не тот",
        corrective_action=corrective_action,
    )
    domain.resolve_incident(session, incident.id, admin)
    session.commit()
    return booking, incident


def test_a_long_cyrillic_corrective_action_reaches_a_strict_server_whole(app, session, host, runner, strict_sink):
    assert len(CORRECTIVE_ACTION) == 545 and len(CORRECTIVE_ACTION.encode()) > 998
    booking, incident = resolved_case(session, host, CORRECTIVE_ACTION)
    result = runner.invoke(args=["recovery", "send-followups"])
    assert result.exit_code == 0, result.output
    assert "sent 1, retry later 0, failed 0" in result.output, result.output
    strict_sink.wait(1)
    assert len(strict_sink.mails) == 1
    rcpts, _options, raw = strict_sink.mails[0]
    assert rcpts == ["anna@client.test"]
    longest = max(len(line) for line in raw_lines(raw))
    assert longest <= 998, longest
    text, page = texts(raw)
    assert CORRECTIVE_ACTION in text
    assert CORRECTIVE_ACTION in html.unescape(page)
    row = session.query(FollowUp).one()
    assert (row.status, row.last_error) == ("sent", None)

    # what Flask-Mail itself would have written for the same mail: a line the server refuses
    message = render_followup(row, booking, incident)
    assert max(len(line) for line in message.as_bytes().split(b"\n")) > 998


@pytest.mark.parametrize(
    "body",
    [
        "x" * 5000,
        "я" * 3000,
        ("Кириллица и ASCII, " * 80).strip(),
        "short line\n" + "💅" * 400 + "\nshort again",
        "a line of exactly 998 octets: " + "y" * 968,
    ],
    ids=["ascii", "cyrillic", "mixed", "emoji-between-short-lines", "exactly-998"],
)
def test_any_long_line_arrives_within_998_octets(app, strict_sink, body):
    with app.app_context(), app.recovery.mailer.connection() as conn:
        conn.send(Message("Long", recipients=["a@client.test"], body=body, html=f"<p>{html.escape(body)}</p>"))
    strict_sink.wait(1)
    assert len(strict_sink.mails) == 1
    _rcpts, options, raw = strict_sink.mails[0]
    assert max(len(line) for line in raw_lines(raw)) <= 998
    text, page = texts(raw)
    assert text.replace("\r\n", "\n").rstrip("\n") == body
    assert html.unescape(page).replace("\r\n", "\n").strip() == f"<p>{body}</p>"
    # 8-bit text is declared to the server that announced 8BITMIME
    assert ("BODY=8BITMIME" in options) == (not raw.isascii())


def test_a_server_without_8bitmime_gets_seven_bit_text(app, host, session, runner):
    """aiosmtpd with ``decode_data=True`` does not announce 8BITMIME: every non-ASCII part is
    encoded (no 8-bit octet on the wire), and the client still reads every word."""
    from aiosmtpd.controller import Controller

    from tests.dispatcher_app import free_port

    sink = RawSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=True)
    controller.start()
    try:
        state = app.extensions["mail"]
        state.server, state.port = "127.0.0.1", port
        resolved_case(session, host, "Теперь мы звоним накануне каждого визита.")
        result = runner.invoke(args=["recovery", "send-followups"])
        assert "sent 1" in result.output, result.output
        sink.wait(1)
    finally:
        controller.stop()
    _rcpts, options, raw = sink.mails[0]
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    assert raw.isascii() and "BODY=8BITMIME" not in options
    text, _page = texts(raw)
    assert "Теперь мы звоним накануне каждого визита." in text and "Здравствуйте, Анна!" in text


def test_the_unsubscribe_header_stays_one_url_on_one_line(app, session, host, runner, strict_sink):
    """``List-Unsubscribe`` (longer than 78 characters: the policy would fold it into
    RFC 2047 encoded words) goes on one line as written; the parsed value is the URL."""
    resolved_case(session, host, "Звоним накануне.", locale="en")
    runner.invoke(args=["recovery", "send-followups"])
    strict_sink.wait(1)
    raw = strict_sink.mails[0][2]
    lines = [line for line in raw_lines(raw.split(b"\r\n\r\n")[0]) if line.startswith(b"List-Unsubscribe:")]
    assert len(lines) == 1 and len(lines[0]) > 78 and b"=?" not in lines[0]
    url = lines[0].split(b": ", 1)[1].decode()
    assert url.startswith("<https://salon.example.com/recovery/followups/") and url.endswith("/unsubscribe>")
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(parsed["List-Unsubscribe"]) == url
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

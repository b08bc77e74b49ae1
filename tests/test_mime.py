"""The cheaper serializer: the very bytes Flask-Mail's ``Message.as_bytes()`` writes.

:func:`flask_recovery.mime.message_bytes` builds the MIME text itself instead of an
``email.mime`` tree. With ``random`` in the same state (it draws the MIME boundaries the
same way) it must give ``as_bytes()``'s bytes exactly, for the check-in mails in every
language and with hostile names, and for any other Flask-Mail message it takes; what it
does not write itself it hands to ``as_bytes()``. Parsed by a mail client (the ``email``
package), both say the same with any boundaries.
"""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from flask import Flask
from flask_mail import Attachment, BadHeaderError, Mail, Message

from flask_recovery import domain
from flask_recovery import mail as recovery_mail
from flask_recovery.followup_mail import MailBatch, render_followup
from flask_recovery.mail import TimeoutConnection
from flask_recovery.mime import message_bytes

from .conftest import running_smtp
from .test_followup_mail import make_followup
from .test_security_mail import EnvelopeSink

SENDER = "Velvet salon <hello@salon.example.com>"
WHEN = datetime(2025, 3, 30, 1, 30, tzinfo=UTC).timestamp()  # a fixed Date header

HOSTILE_NAMES = [
    "Анна Смирнова",
    "Zoe\r\nBcc: thief@evil.example\r\nX-Injected: yes",
    'Ann "Quote" <ann@evil.example>, thief@evil.example',
    "José Ñoño-O'Brien",
    "李小龙",
    "Анна 💅 =?utf-8?q?x?= Смирнова",
    "Tab\tand\x07control\x1bcharacters\u2028",
    "Очень-Длинное-Имя " * 6,
    "",
]


def flask_mail_bytes(message: Message) -> bytes:
    """``as_bytes()``, with the one deliberate difference: the list headers on one line as given.

    (``email.policy`` writes a long ``List-Unsubscribe`` as RFC 2047 encoded words.)
    """
    raw = message.as_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = re.split(rb"\r\n(?![ \t])", head)
    for name, value in (message.extra_headers or {}).items():
        line = f"{name}: {value}".encode()
        if name.lower() in ("list-unsubscribe", "list-unsubscribe-post") and value.isascii() and len(line) <= 998:
            lines = [line if folded.lower().startswith(name.lower().encode() + b":") else folded for folded in lines]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def same_as_flask_mail(message: Message, seed: int = 7) -> bytes | None:
    """Assert that ``message_bytes`` gives what ``as_bytes`` gives (or fails as it does)."""
    outcomes = []
    for serialize in (flask_mail_bytes, message_bytes):
        random.seed(seed)
        try:
            outcomes.append(serialize(message))
        except Exception as error:  # the same error, from the same place
            outcomes.append((type(error), str(error)))
    expected, found = outcomes
    assert found == expected
    return found if isinstance(found, bytes) else None


def meaning(raw: bytes) -> list:
    """What a mail client reads in ``raw``: every header decoded, each part's type and text."""
    parsed = message_from_bytes(raw, policy=policy.default)
    seen = []
    for part in parsed.walk():
        headers = [(name.lower(), str(value)) for name, value in part.items() if name.lower() != "content-type"]
        params = sorted((k, v) for k, v in part["Content-Type"].params.items() if k != "boundary")
        content = None if part.is_multipart() else part.get_content()
        seen.append((part.get_content_type(), params, headers, content, part.defects))
    return seen


# -- the check-in mails -------------------------------------------------------------------------


@pytest.mark.config(MAIL_DEFAULT_SENDER=SENDER, RECOVERY_BASE_URL="https://salon.example.com")
@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_check_in_mail_is_the_bytes_flask_mail_writes(app, session, host, locale, name):
    booking, incident, followup = make_followup(
        session,
        host,
        locale=locale,
        client_name=name,
        service="Стрижка\r\nBcc: thief@evil.example" if locale == "ru" else "Haircut <b>&</b>",
        corrective_action="<script>alert('x')</script> & мы позвоним заранее\r\n.\r\nFrom now on",
    )
    domain.grant_compensation(session, incident.id, host.load, host.STAFF["admin"], kind="percent_discount", percent=20)
    message = render_followup(followup, booking, incident)
    message.date = WHEN
    raw = same_as_flask_mail(message)
    assert raw is not None
    # a mail client reads the same from both, whatever the boundaries
    assert meaning(message_bytes(message)) == meaning(message.as_bytes())
    # and what it reads is the mail: multipart text + HTML, one line per header, no injection
    parsed = message_from_bytes(raw, policy=policy.default)
    assert [part.get_content_type() for part in parsed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(parsed["List-Unsubscribe"]).startswith("<https://salon.example.com/recovery/followups/")
    # on one line, as mail providers read it for their unsubscribe button: not encoded words
    assert b"\r\nList-Unsubscribe: <https://salon.example.com/recovery/followups/" in raw
    assert b"=?utf-8?q?=3Chttps" not in raw and b"=?utf-8?q?=3Chttps" in message.as_bytes()
    assert "&lt;script&gt;" in parsed.get_body(("html",)).get_content()
    if locale == "ru":
        assert "Здравствуйте" in parsed.get_body(("plain",)).get_content()


@pytest.mark.config(MAIL_DEFAULT_SENDER=SENDER, RECOVERY_BASE_URL="https://salon.example.com")
def test_a_check_in_without_a_booking_or_a_case_is_the_same_bytes(app, session):
    """What the dispatcher sends for an archived booking: the mail from the stored row alone."""
    from flask_recovery.models import FollowUp, utcnow

    rows = [
        FollowUp(
            booking_id=f"b{k}",
            client_id=f"c{k}",
            kind="reminder" if k % 3 == 0 else "checkin",
            status="sending",
            due_at=utcnow(),
            locale=("ru", "en", "ru_RU", None)[k % 4],
            email=f"client{k}@client.test",
            client_name=HOSTILE_NAMES[k % len(HOSTILE_NAMES)],
        )
        for k in range(12)
    ]
    session.add_all(rows)
    session.commit()
    batch = MailBatch()
    for k, row in enumerate(rows):
        message = render_followup(row, None, None, batch)
        message.date = WHEN + k
        assert same_as_flask_mail(message, seed=k) is not None


# -- any Flask-Mail message ------------------------------------------------------------------


@pytest.fixture
def mail_app():
    app = Flask("mime_test")
    app.config.update(MAIL_DEFAULT_SENDER=SENDER, MAIL_SUPPRESS_SEND=False)
    Mail(app)
    with app.app_context():
        yield app


BODIES = [
    "",
    "one line",
    "lines\nwith\nLF\n",
    "lines\r\nwith\r\nCRLF\r\n",
    "a lone\rCR and\n\rmixed\r\n\nends",
    "\n\n leading and trailing blank lines \n\n",
    ".a dot first\n..two\nFrom the start\n>From quoted",
    "Кириллица, émigré, 李, and 💅 beyond the BMP",
    "--===============0000000000000000000==\n--===============0000000000000000000==--",
    "x" * 2000 + "\n" + "я" * 1500,
    "\x00\x1b control \x0b\x0c\x1c characters \u2028 \u2029 \x85",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
@pytest.mark.parametrize("html", [None, "<p>Привет &amp; hello</p>\n", ""], ids=["text", "html", "empty-html"])
def test_any_body_is_the_same_bytes(mail_app, body, html):
    message = Message("Subject", recipients=["a@client.test"], body=body, html=html, date=WHEN)
    assert same_as_flask_mail(message) is not None


@pytest.mark.parametrize(
    "subject",
    [
        "Hello",
        "",
        "Привет, Анна! Как вы после визита к нам? " * 3,
        "A long ASCII subject that needs folding because it goes well beyond seventy-eight characters",
        "=?utf-8?q?looks_encoded?= but is not",
        "Word" * 40,
        "Emoji 💅 subject",
    ],
)
@pytest.mark.parametrize(
    "recipients",
    [
        ["a@client.test"],
        [("Анна Смирнова", "anna@client.test")],
        [('Ann, "the" <client>', "ann@client.test")],
        [("A very long display name " * 4, "long@client.test"), "b@client.test", ("Б", "c@client.test")],
        ["Zoë <zoe@client.test>"],
    ],
    ids=["plain", "cyrillic", "punctuation", "several", "string-with-name"],
)
def test_any_subject_and_recipients_are_the_same_bytes(mail_app, subject, recipients):
    message = Message(subject, recipients=recipients, body="Hi", html="<p>Hi</p>", date=WHEN)
    assert same_as_flask_mail(message) is not None


@pytest.mark.parametrize(
    "sender", [SENDER, ("Салон «Бархат»", "hello@salon.example.com"), "plain@salon.example.com"], ids=range(3)
)
def test_any_sender_headers_and_alternatives_are_the_same_bytes(mail_app, sender):
    message = Message(
        "Check-in",
        recipients=["a@client.test"],
        bcc=["hidden@salon.example.com"],
        sender=sender,
        body="Text",
        html="<p>HTML</p>",
        alts={"x-amp-html": "<p>AMP</p>", "html": "<p>HTML again</p>"},
        extra_headers={
            "List-Unsubscribe": "<https://salon.example.com/recovery/followups/" + "Tok3n.x-y_z" * 9 + "/unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
            "X-Long": "word " * 40,
            "X-Empty": "",
        },
        date=WHEN,
    )
    message.msgId = "<recovery-followup-1-checkin@salon.example.com>"
    assert same_as_flask_mail(message) is not None


@pytest.mark.parametrize(
    "extra",
    [
        {"X-Cyrillic": "кириллица"},  # Flask-Mail's policy cannot write it: the same error
        {"X-Folded": "first\r\n second"},
        {"X-Number": 42},
        {"Имя": "value"},
    ],
    ids=["non-ascii", "folded", "not-a-string", "non-ascii-name"],
)
def test_unusual_headers_go_as_flask_mail_takes_them(mail_app, extra):
    """Whatever Flask-Mail does with them (writes, refuses, fails) happens here too."""
    message = Message("Subject", recipients=["a@client.test"], body="Hi", html="<p>Hi</p>", date=WHEN)
    message.extra_headers = extra
    same_as_flask_mail(message)


@pytest.mark.parametrize(
    ("subject", "extra"),
    [
        ("Subject", {"X-Injected": "value\r\nBcc: thief@evil.example"}),  # older Pythons write it
        ("Subject", {"X-Name\r\nBcc: thief@evil.example\r\nX-Tail": "value"}),
        ("Hello\x0bX-Injected: yes", {}),  # Flask-Mail checks CR and LF only
        ("Hello\x0cX-Injected: yes", {}),
        ("Hello\x1cX-Injected: yes", {}),
        ("Subject", {"X-Tail": "value\x0bBcc: thief@evil.example"}),
    ],
    ids=["crlf-value", "crlf-name", "vt-subject", "ff-subject", "fs-subject", "vt-value"],
)
def test_a_header_that_would_start_a_new_line_is_refused(mail_app, subject, extra):
    message = Message(subject, recipients=["a@client.test"], body="Hi", html="<p>Hi</p>", date=WHEN)
    message.extra_headers = extra
    with pytest.raises(BadHeaderError):
        message_bytes(message)


def test_what_it_does_not_write_itself_is_flask_mails_own(mail_app, monkeypatch):
    messages = [
        Message("Cc", recipients=["a@client.test"], cc=["b@client.test"], body="x", date=WHEN),
        Message("Reply-To", recipients=["a@client.test"], reply_to="desk@salon.example.com", body="x", date=WHEN),
        Message("Charset", recipients=["a@client.test"], body="déjà", charset="iso-8859-1", date=WHEN),
        Message(
            "Attachment",
            recipients=["a@client.test"],
            body="x",
            attachments=[Attachment("a.txt", "text/plain", b"data")],
            date=WHEN,
        ),
        Message("Alternative", recipients=["a@client.test"], body="x", alts={"Not A/Subtype": "y"}, date=WHEN),
        Message("No body", recipients=["a@client.test"], html="<p>only HTML</p>", date=WHEN),
    ]
    calls = []
    original = Message.as_bytes

    def as_bytes(self):
        calls.append(self.subject)
        return original(self)

    for message in messages:
        same_as_flask_mail(message)
    monkeypatch.setattr(Message, "as_bytes", as_bytes)
    for message in messages:
        message_bytes(message)
    assert calls == [message.subject for message in messages]

    # a patched Flask-Mail is Flask-Mail: the patch serializes every message
    plain = Message("Plain", recipients=["a@client.test"], body="x", html="<p>x</p>", date=WHEN)
    message_bytes(plain)
    assert calls[-1] == "Plain"

    class Custom(Message):
        def as_bytes(self) -> bytes:
            return b"built by the subclass"

    custom = Custom("Custom", recipients=["a@client.test"], body="x")
    assert message_bytes(custom) == b"built by the subclass"


# -- through a real server, the dispatcher's way ---------------------------------------------------


@pytest.fixture
def raw_sink(mail_app):
    sink = EnvelopeSink()  # keeps each message's bytes as they arrived
    with running_smtp(sink) as port:
        state = mail_app.extensions["mail"]
        state.server, state.port = "127.0.0.1", port
        yield sink


def received(sink: EnvelopeSink, n: int) -> list[bytes]:
    deadline = time.monotonic() + 10
    while len(sink.mails) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return [raw for _sender, _rcpts, raw in sink.mails]


def test_the_server_gets_what_flask_mail_would_have_sent(mail_app, raw_sink, monkeypatch):
    """Each message serialized while the server reads the one before it (``next_message``)
    arrives as Flask-Mail's own serialization of it, once; a message that cannot be
    serialized fails at its own turn and takes nothing else with it."""
    messages = [
        Message(
            f"Check-in {n} для Анны" if n % 2 else f"Check-in {n}",
            recipients=[("Анна Смирнова" if n % 2 else "Ann Smith", f"client{n}@client.test")],
            body=f"Body {n}\n.\n..leading dots\nКириллица",
            html=f"<p>{n}</p>",
            extra_headers={"List-Unsubscribe": f"<https://salon.example.com/u/{'t' * 60}{n}>"},
            date=WHEN + n,
        )
        for n in range(5)
    ]
    messages[2].extra_headers = {"X-Cyrillic": "кириллица"}  # as_bytes fails on it
    serialized = []
    original = recovery_mail.message_bytes

    def counting(message):
        serialized.append(message.subject)
        return original(message)

    monkeypatch.setattr(recovery_mail, "message_bytes", counting)
    failed = []
    with TimeoutConnection(mail_app.extensions["mail"], 5) as conn:
        for n, message in enumerate(messages):
            following = messages[n + 1] if n + 1 < len(messages) else None
            try:
                conn.send(message, next_message=following)
            except UnicodeEncodeError:
                failed.append(n)
    assert failed == [2]
    arrived = received(raw_sink, 4)
    assert len(arrived) == 4
    expected = [messages[n] for n in (0, 1, 3, 4)]
    assert [meaning(raw) for raw in arrived] == [meaning(message.as_bytes()) for message in expected]
    # the first at its turn, each next one ahead of it, the failing one again at its turn, and
    # the one after it at its own turn (no message went before it to serialize it ahead)
    assert serialized == [messages[n].subject for n in (0, 1, 2, 2, 3, 4)]


def test_a_message_changed_after_the_last_one_went_is_not_sent_stale(mail_app, raw_sink):
    """The connection keeps the bytes it prepared only for the message object it prepared them for."""
    first = Message("First", recipients=["a@client.test"], body="one", date=WHEN)
    second = Message("Second", recipients=["b@client.test"], body="two", date=WHEN + 1)
    other = Message("Other", recipients=["c@client.test"], body="three", date=WHEN)
    with TimeoutConnection(mail_app.extensions["mail"], 5) as conn:
        conn.send(first, next_message=second)
        conn.send(other)  # not the message announced: serialized on its own
        conn.send(second)
    arrived = received(raw_sink, 3)
    assert [message_from_bytes(raw)["Subject"] for raw in arrived] == ["First", "Other", "Second"]

"""Flask-Mail messages on the wire through the standard library (``flask_recovery.mime``).

:func:`flask_recovery.mime.message_bytes` writes a :class:`flask_mail.Message` as an
``email.message.EmailMessage`` under ``email.policy.SMTP``. A mail client (the ``email``
package) must read in it what Flask-Mail's own serialization says (every header, every
text, each part's type: what the message's attributes say), for the check-in mails in
every language and with hostile names and for any other Flask-Mail message. How it
travels: no line over 998 octets, the list headers on one line, a header that would start
a new line refused. (Flask-Mail's own serialization is not the reference: it writes long
8-bit lines and breaks a long display name inside a word.)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.policy import compat32
from email.utils import formatdate, getaddresses, parseaddr

import pytest
from flask import Flask
from flask_mail import Attachment, BadHeaderError, Mail, Message

from flask_recovery import domain, mime
from flask_recovery.followup_mail import MailBatch, render_followup
from flask_recovery.mail import TimeoutConnection
from flask_recovery.mime import POLICY, UnsendableAddress, email_message, envelope, message_bytes

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


def lines_of(raw: bytes) -> list[bytes]:
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, no bare LF or CR
    assert b"\r" not in raw.replace(b"\r\n", b"")
    return raw.split(b"\r\n")


def assert_fits_the_wire(raw: bytes) -> None:
    longest = max(len(line) for line in lines_of(raw))
    assert longest <= 998, longest


def decoded(value: str | None) -> str | None:
    """A raw header value as RFC 2047 reads it (adjacent encoded words joined, without the
    space the ``email`` package's address parser puts between them)."""
    if value is None:
        return None
    unfolded = str(value).replace("\r\n", "").replace("\n", "")  # RFC 5322 unfolding
    return str(make_header(decode_header(unfolded)))


def addresses(value: str | None) -> list[tuple[str, str]]:
    return [(decoded(name), spec) for name, spec in getaddresses([value or ""])]


def reading(raw: bytes) -> dict:
    """What a mail client reads in ``raw``: the headers decoded, the leaf parts' types and texts."""
    parsed = message_from_bytes(raw, policy=policy.default)
    head = message_from_bytes(raw, policy=compat32)  # the raw header values
    headers = {}
    for name in ("Subject", "Date", "Message-ID", "Bcc"):
        headers[name] = decoded(head[name])
    for name in ("From", "Cc", "Reply-To"):
        headers[name] = (
            None if head[name] is None else ", ".join(str(Address(n, addr_spec=a)) for n, a in addresses(head[name]))
        )
    headers["To"] = sorted(addresses(head["To"]))
    extra = {
        name.lower(): " ".join(decoded(value).split())
        for name, value in head.items()
        if name.lower().startswith(("x-", "list-", "auto-"))
    }
    parts = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        content = part.get_content()
        if isinstance(content, str):  # line ends as the reader shows them, the last one included
            content = content.replace("\r\n", "\n")
            content = content if content.endswith("\n") else content + "\n"
        parts.append((part.get_content_type(), part.get_param("charset"), part.get_filename(), content))
    defects = [defect for part in parsed.walk() for defect in part.defects]
    return {"headers": headers, "extra": extra, "parts": parts, "defects": defects}


def _pair(address) -> tuple[str, str]:
    name, spec = address if isinstance(address, tuple) else parseaddr(address)
    return " ".join(name.split()), spec


def _address(address) -> str:
    name, spec = _pair(address)
    return str(Address(display_name=name, addr_spec=spec))


def said(message: Message) -> dict:
    """What ``message`` says, from its attributes: what a mail client must read in it."""
    headers = {
        "Subject": message.subject or None,
        "From": _address(message.sender),
        "Date": formatdate(message.date, localtime=True),
        "Message-ID": message.msgId,
        "Cc": ", ".join(_address(a) for a in message.cc) or None,
        "Reply-To": _address(message.reply_to) if message.reply_to else None,
        "Bcc": None,
        "To": sorted(_pair(a) for a in message.recipients),
    }
    extra = {name.lower(): " ".join(str(value).split()) for name, value in (message.extra_headers or {}).items()}
    charset = message.charset or "utf-8"
    texts = [("text/plain", message.body)] if message.body is not None or not message.alts else []
    texts += [(f"text/{subtype}", text) for subtype, text in message.alts.items()]
    parts = []
    for kind, text in texts:
        text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
        parts.append((kind, charset, None, text if text.endswith("\n") else text + "\n"))
    for a in message.attachments:
        data = a.data.decode() + "\n" if a.content_type.startswith("text/") else a.data
        parts.append((a.content_type, None, a.filename, data))
    return {"headers": headers, "extra": extra, "parts": parts, "defects": []}


def assert_reads_as_it_says(message: Message) -> bytes:
    """A mail client reads in ``message_bytes`` what the message says, and every line fits the wire."""
    raw = message_bytes(message)
    assert reading(raw) == said(message)
    assert_fits_the_wire(raw)
    return raw


# -- the check-in mails -------------------------------------------------------------------------


@pytest.mark.config(MAIL_DEFAULT_SENDER=SENDER, RECOVERY_BASE_URL="https://salon.example.com")
@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_check_in_mail_reads_as_it_says(app, session, host, locale, name):
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
    raw = assert_reads_as_it_says(message)
    parsed = message_from_bytes(raw, policy=policy.default)
    # multipart text + HTML (no needless multipart/mixed around them), no injected header
    assert [part.get_content_type() for part in parsed.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message.extra_headers["List-Unsubscribe"]
    assert str(parsed["List-Unsubscribe"]) == unsubscribe
    # on one line as written, as mail providers read it for their unsubscribe button: no
    # encoded words (what email.policy.SMTP itself writes for a long URL)
    assert b"\r\nList-Unsubscribe: " + unsubscribe.encode() + b"\r\n" in raw
    assert b"=?utf-8?q?=3Chttps" not in raw
    assert b"=?utf-8?q?=3Chttps" in policy.SMTP.fold_binary("List-Unsubscribe", unsubscribe)
    assert "&lt;script&gt;" in parsed.get_body(("html",)).get_content()
    if locale == "ru":
        assert "Здравствуйте" in parsed.get_body(("plain",)).get_content()


@pytest.mark.config(MAIL_DEFAULT_SENDER=SENDER, RECOVERY_BASE_URL="https://salon.example.com")
def test_a_check_in_without_a_booking_or_a_case_reads_the_same(app, session):
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
        assert_reads_as_it_says(message)


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
    "--=_recovery_0000\n--===============0000000000000000000==--",
    "x" * 2000 + "\n" + "я" * 1500,
    "\x00\x1b control \x0b\x0c\x1c characters \u2028 \u2029 \x85",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
@pytest.mark.parametrize("html", [None, "<p>Привет &amp; hello</p>\n", ""], ids=["text", "html", "empty-html"])
def test_any_body_reads_the_same(mail_app, body, html):
    message = Message("Subject", recipients=["a@client.test"], body=body, html=html, date=WHEN)
    assert_reads_as_it_says(message)


def test_a_long_line_is_encoded_and_a_short_one_goes_as_it_is(mail_app):
    long_line = Message("Long", recipients=["a@client.test"], body="Мы " + "позвоним заранее " * 60, date=WHEN)
    raw = message_bytes(long_line)
    assert b"Content-Transfer-Encoding: base64" in raw or b"Content-Transfer-Encoding: quoted-printable" in raw
    assert max(len(line) for line in long_line.as_bytes().split(b"\n")) > 998  # what Flask-Mail itself sends
    short = message_bytes(Message("Short", recipients=["a@client.test"], body="Мы позвоним заранее.", date=WHEN))
    assert b"Content-Transfer-Encoding: 8bit" in short and "Мы позвоним заранее.".encode() in short
    seven = message_bytes(Message("Short", recipients=["a@client.test"], body="We call ahead.", date=WHEN))
    assert b"Content-Transfer-Encoding: 7bit" in seven


def test_a_boundary_found_in_a_part_is_replaced_by_one_that_is_not(mail_app):
    body = f"--{mime._BOUNDARY}\nnot a part\n--{mime._BOUNDARY}--"
    raw = assert_reads_as_it_says(Message("B", recipients=["a@client.test"], body=body, html="<p>x</p>", date=WHEN))
    boundary = message_from_bytes(raw, policy=policy.default).get_boundary()
    assert boundary and boundary != mime._BOUNDARY and boundary not in body


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
def test_any_subject_and_recipients_read_the_same(mail_app, subject, recipients):
    message = Message(subject, recipients=recipients, body="Hi", html="<p>Hi</p>", date=WHEN)
    assert_reads_as_it_says(message)


@pytest.mark.parametrize(
    "sender", [SENDER, ("Салон «Бархат»", "hello@salon.example.com"), "plain@salon.example.com"], ids=range(3)
)
def test_any_sender_headers_and_alternatives_read_the_same(mail_app, sender):
    unsubscribe = "<https://salon.example.com/recovery/followups/" + "Tok3n.x-y_z" * 9 + "/unsubscribe>"
    message = Message(
        "Check-in",
        recipients=["a@client.test"],
        bcc=["hidden@salon.example.com"],
        sender=sender,
        body="Text",
        html="<p>HTML</p>",
        alts={"x-amp-html": "<p>AMP</p>", "html": "<p>HTML again</p>"},
        extra_headers={
            "List-Unsubscribe": unsubscribe,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
            "X-Long": "word " * 40,
            "X-Empty": "",
        },
        date=WHEN,
    )
    message.msgId = "<recovery-followup-1-checkin@salon.example.com>"
    raw = assert_reads_as_it_says(message)
    assert b"hidden@salon.example.com" not in raw  # Bcc: in the envelope only
    sender_address = sender[1] if isinstance(sender, tuple) else parseaddr(sender)[1]
    assert envelope(message) == (sender_address, ["a@client.test", "hidden@salon.example.com"])
    assert f"\r\nList-Unsubscribe: {unsubscribe}\r\n".encode() in raw
    assert b"\r\nX-Long: word word" in raw and b"\r\n word" in raw  # an ordinary header is folded


def test_a_short_header_is_written_as_the_policy_writes_it(mail_app):
    """The header classes made once write a line that needs no folding as ``email.policy.SMTP`` does."""
    headers = [
        ("From", SENDER),
        ("To", "Client1 Test <client1@client.test>"),
        ("Date", "Sun, 30 Mar 2025 01:30:00 -0000"),
        ("Message-ID", "<recovery-followup-1-checkin@salon.example.com>"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
        ("MIME-Version", "1.0"),
        ("Auto-Submitted", "auto-generated"),
        ("Subject", "Hello   there"),
        ("Subject", "A long ASCII subject that needs folding because it goes well beyond seventy-eight characters"),
        ("Content-Type", 'multipart/alternative; boundary="=_recovery_0123456789abcdef"'),
    ]
    for name, value in headers:
        standard = policy.SMTP.fold_binary(name, policy.SMTP.header_factory(name, value))
        assert POLICY.fold_binary(name, POLICY.header_factory(name, value)) == standard


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"X-Cyrillic": "кириллица"}, "кириллица"),  # encoded words (Flask-Mail fails on it)
        ({"X-Number": 42}, "42"),
    ],
    ids=["non-ascii", "not-a-string"],
)
def test_unusual_header_values_are_written_as_a_client_reads_them(mail_app, extra, expected):
    message = Message("Subject", recipients=["a@client.test"], body="Hi", html="<p>Hi</p>", date=WHEN)
    message.extra_headers = extra
    raw = message_bytes(message)
    assert raw.isascii()
    assert message_from_bytes(raw, policy=policy.default)[next(iter(extra))] == expected


@pytest.mark.parametrize(
    ("subject", "extra"),
    [
        ("Subject", {"X-Injected": "value\r\nBcc: thief@evil.example"}),
        ("Subject", {"X-Name\r\nBcc: thief@evil.example\r\nX-Tail": "value"}),
        ("Subject", {"X-Folded": "first\r\n second"}),
        ("Subject", {"Имя": "value"}),
        ("Subject", {"X-Colon:": "value"}),
        ("Hello\x0bX-Injected: yes", {}),  # Flask-Mail checks CR and LF only
        ("Hello\x0cX-Injected: yes", {}),
        ("Hello\x1cX-Injected: yes", {}),
        ("Hello\u2028X-Injected: yes", {}),
        ("Subject", {"X-Tail": "value\x0bBcc: thief@evil.example"}),
        ("Subject", {"X-Trailing": "value\r\n"}),  # the policy itself lets a trailing break through
        ("Hello\n", {}),
    ],
    ids=[
        "crlf-value",
        "crlf-name",
        "folded",
        "non-ascii-name",
        "colon-name",
        "vt",
        "ff",
        "fs",
        "ls",
        "vt-value",
        "trailing-crlf",
        "trailing-lf-subject",
    ],
)
def test_a_header_that_would_start_a_new_line_is_refused(mail_app, subject, extra):
    message = Message(subject, recipients=["a@client.test"], body="Hi", html="<p>Hi</p>", date=WHEN)
    message.extra_headers = extra
    with pytest.raises(BadHeaderError):
        message_bytes(message)


@pytest.mark.parametrize(
    "address",
    [
        "zoe@client.test\r\nBcc: thief@evil.example",
        "zoe@client.test\x00thief@evil.example",
        "not an address",
        "\u0430nna@client.test",  # a Cyrillic 'а': needs SMTPUTF8
        "x@\u043f\u043e\u0447\u0442\u0430..\u0440\u0444",  # an empty IDN label
        ("Zoe", "zoe@client.test, thief@evil.example"),
    ],
    ids=["crlf", "nul", "no-at", "non-ascii-local", "bad-idn", "two-in-a-pair"],
)
def test_an_address_that_is_not_one_mailbox_is_refused(mail_app, address):
    message = Message("Subject", recipients=[address], body="Hi", date=WHEN)
    with pytest.raises(UnsendableAddress):
        message_bytes(message)
    with pytest.raises(UnsendableAddress):
        envelope(message)


def test_an_international_domain_goes_in_its_ascii_form(mail_app):
    message = Message("Subject", recipients=[("Анна", "anna@почта.рф")], body="Hi", date=WHEN)
    assert envelope(message)[1] == ["anna@xn--80a1acny.xn--p1ai"]
    parsed = message_from_bytes(message_bytes(message), policy=policy.default)
    assert parsed["To"].addresses[0].addr_spec == "anna@xn--80a1acny.xn--p1ai"
    assert parsed["To"].addresses[0].display_name == "Анна"


def test_cc_reply_to_charset_and_attachments(mail_app):
    messages = [
        Message("Cc", recipients=["a@client.test"], cc=["b@client.test"], body="x", date=WHEN),
        Message("Reply-To", recipients=["a@client.test"], reply_to="desk@salon.example.com", body="x", date=WHEN),
        Message("Charset", recipients=["a@client.test"], body="déjà", charset="iso-8859-1", date=WHEN),
        Message(
            "Attachment",
            recipients=["a@client.test"],
            body="x",
            html="<p>x</p>",
            attachments=[Attachment("a.txt", "text/plain", b"data"), Attachment("b.bin", "image/png", b"\x89PNG")],
            date=WHEN,
        ),
    ]
    for message in messages:
        assert_reads_as_it_says(message)
    attached = message_from_bytes(message_bytes(messages[3]), policy=policy.default)
    assert attached.get_content_type() == "multipart/mixed"
    assert [(a.get_filename(), a.get_content()) for a in attached.iter_attachments()] == [
        ("a.txt", "data"),
        ("b.bin", b"\x89PNG"),
    ]
    assert envelope(messages[0])[1] == ["a@client.test", "b@client.test"]


def test_html_alone_and_a_bad_alternative(mail_app):
    html_only = email_message(Message("HTML", recipients=["a@client.test"], html="<p>only HTML</p>", date=WHEN))
    assert html_only.get_content_type() == "text/html" and html_only.get_content() == "<p>only HTML</p>\n"
    with pytest.raises(ValueError, match="subtype"):
        message_bytes(Message("Alt", recipients=["a@client.test"], body="x", alts={"Not A/Subtype": "y"}, date=WHEN))


# -- through a real server ----------------------------------------------------------------------


@pytest.fixture
def raw_sink(mail_app):
    sink = EnvelopeSink()  # keeps each message's bytes as they arrived
    with running_smtp(sink) as port:
        state = mail_app.extensions["mail"]
        state.server, state.port = "127.0.0.1", port
        yield sink


def received(sink: EnvelopeSink, n: int) -> list[tuple[str, list[str], bytes]]:
    deadline = time.monotonic() + 10
    while len(sink.mails) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(sink.mails)


def test_the_server_gets_each_message_as_it_says(mail_app, raw_sink):
    """Each message arrives once, reading as it says, to the bare addresses of its envelope;
    one that cannot be written fails at its own turn alone."""
    messages = [
        Message(
            f"Check-in {n} для Анны" if n % 2 else f"Check-in {n}",
            recipients=[("Анна Смирнова" if n % 2 else "Ann Smith", f"client{n}@client.test")],
            bcc=[f"copy{n}@salon.example.com"],
            body=f"Body {n}\n.\n..leading dots\nКириллица",
            html=f"<p>{n}</p>",
            extra_headers={"List-Unsubscribe": f"<https://salon.example.com/u/{'t' * 60}{n}>"},
            date=WHEN + n,
        )
        for n in range(5)
    ]
    messages[2].extra_headers = {"X-Tail": "value\x0bBcc: thief@evil.example"}
    failed = []
    with TimeoutConnection(mail_app.extensions["mail"], 5) as conn:
        for n, message in enumerate(messages):
            try:
                conn.send(message)
            except BadHeaderError:
                failed.append(n)
    assert failed == [2]
    arrived = received(raw_sink, 4)
    assert len(arrived) == 4
    expected = [messages[n] for n in (0, 1, 3, 4)]
    assert [reading(raw) for _from, _rcpts, raw in arrived] == [said(m) for m in expected]
    assert [rcpts for _from, rcpts, _raw in arrived] == [
        [f"client{n}@client.test", f"copy{n}@salon.example.com"] for n in (0, 1, 3, 4)
    ]
    assert {mail_from for mail_from, _rcpts, _raw in arrived} == {"hello@salon.example.com"}

"""Header injection: a client name, service, address, note or comment with CR/LF adds no header
to any mail and no recipient to any envelope.

Every kind of mail the extension sends goes through a real SMTP server (aiosmtpd) that
keeps the envelope and the raw bytes: the client's check-in (and its reminder), the
managers' "still not right" alert and the request for approval.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from flask_recovery import Staff, domain, tokens
from flask_recovery.models import FollowUp

from .conftest import running_smtp

INJECT = "\r\nBcc: thief@evil.example\r\nX-Injected: yes\r\n\r\nforged body"
CONFIG = {
    "MAIL_DEFAULT_SENDER": "Velvet salon <hello@salon.test>",
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
    "RECOVERY_FOLLOWUP_REMINDER_AFTER": timedelta(0),
    "RECOVERY_MANAGER_EMAILS": ["boss@salon.test"],
}
pytestmark = pytest.mark.config(**CONFIG)


class EnvelopeSink:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.mails.append(
                (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content)
            )
        return "250 OK"


@pytest.fixture
def sink(app):
    handler = EnvelopeSink()
    with running_smtp(handler) as port:
        state = app.extensions["mail"]
        state.server, state.port, state.default_sender = "127.0.0.1", port, "Velvet salon <hello@salon.test>"
        yield handler


def wait_for(sink: EnvelopeSink, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(sink.mails) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def header_lines(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return [line.decode("ascii", "replace") for line in head.splitlines()]


def assert_no_injection(raw: bytes, rcpt_tos: list[str], expected_rcpts: set[str]) -> None:
    assert set(rcpt_tos) == expected_rcpts, rcpt_tos
    names = [line.split(":", 1)[0].lower() for line in header_lines(raw) if line and not line[0].isspace()]
    assert "bcc" not in names and "x-injected" not in names, names
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None and message["X-Injected"] is None
    for header in ("To", "Subject", "From", "List-Unsubscribe"):
        value = message[header]
        if value is not None:
            assert "\r" not in str(value) and "\n" not in str(value), (header, value)
            assert "thief@evil.example" not in str(value) or header == "Subject", (header, value)
    all_addresses = " ".join(str(message[h] or "") for h in ("To", "Cc", "Bcc", "Reply-To"))
    assert "thief@evil.example" not in all_addresses


@pytest.mark.parametrize("where", ["client_name", "service", "both"], ids=["name", "service", "name-and-service"])
def test_a_client_name_or_service_with_cr_lf_adds_no_header(app, client, host, runner, sink, session, where):
    overrides = {"client_email": "zoe@client.test", "locale": "en"}
    if where in ("client_name", "both"):
        overrides["client_name"] = "Zoe" + INJECT
    if where in ("service", "both"):
        overrides["service"] = "Haircut" + INJECT
    booking = host.add_booking("b1", **overrides)
    admin = host.STAFF["admin"]
    incident = domain.record_incident(
        session,
        booking,
        admin,
        category="late",
        severity="major",
        description="late" + INJECT,
        corrective_action="We call ahead" + INJECT,
    )
    domain.resolve_incident(session, incident.id, admin)
    result = runner.invoke(args=["recovery", "send-followups"])
    assert "sent 1" in result.output, result.output
    wait_for(sink, 1)
    (mail_from, rcpts, raw) = sink.mails[0]
    assert_no_injection(raw, rcpts, {"zoe@client.test"})
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Subject"].startswith("How are you after your visit")

    # the reminder is built from the stored row: the same holds
    result = runner.invoke(args=["recovery", "send-followups"])
    assert "sent 1" in result.output, result.output
    wait_for(sink, 2)
    assert_no_injection(sink.mails[1][2], sink.mails[1][1], {"zoe@client.test"})

    # her "still not right" answer, with CR/LF in the comment, alerts the managers cleanly
    followup = session.query(FollowUp).filter_by(kind="checkin").one()
    token = tokens.make_token("answer", followup.id)
    assert (
        client.post(
            f"/recovery/followups/{token}/answer", data={"choice": "not_right", "comment": "bad" + INJECT}
        ).status_code
        == 200
    )
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert "sent 1" in result.output, result.output
    wait_for(sink, 3)
    assert_no_injection(sink.mails[2][2], sink.mails[2][1], {"boss@salon.test"})


@pytest.mark.parametrize(
    "address",
    [
        "zoe@client.test\r\nBcc: thief@evil.example",
        "zoe@client.test\nX-Injected: yes",
        "zoe@client.test, thief@evil.example",
        "Zoe <zoe@client.test>, <thief@evil.example>",
        "zoe@client.test\x00thief@evil.example",
    ],
)
def test_an_address_with_cr_lf_or_a_second_address_sends_nothing_to_anyone_else(host, runner, sink, session, address):
    booking = host.add_booking("b1", client_email=address, locale="en")
    admin = host.STAFF["admin"]
    incident = domain.record_incident(session, booking, admin, category="late", severity="major", description="late")
    domain.resolve_incident(session, incident.id, admin)
    runner.invoke(args=["recovery", "send-followups"])
    time.sleep(0.3)
    for _from, rcpts, raw in sink.mails:
        assert "thief@evil.example" not in rcpts
        assert_no_injection(raw, rcpts, set(rcpts))


def test_a_staff_name_and_note_with_cr_lf_add_no_header_to_the_request_for_approval(app, client, host, runner, sink):
    host.add_booking("b1")
    host.staff = Staff(id="s-x", name="Eve" + INJECT, role="admin")
    created = client.post(
        "/recovery/api/bookings/b1/incidents", json={"category": "result", "severity": "major", "description": "x"}
    ).get_json()
    requested = client.post(
        f"/recovery/api/incidents/{created['id']}/compensations",
        json={"kind": "gift", "amount": 900_000, "note": "Please" + INJECT},
    )
    assert requested.get_json()["status"] == "pending_approval"
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert "sent 1" in result.output, result.output
    wait_for(sink, 1)
    assert_no_injection(sink.mails[0][2], sink.mails[0][1], {"boss@salon.test"})

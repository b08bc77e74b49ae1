"""Escaping: ``<script>`` and attribute-breaking text in every free-text field comes back inert.

Every free text a person types (staff: what happened, what will change, notes, reasons,
acknowledgements; the client: her comment; the host: her name, the service, a staff
member's name) is filled with hostile markup, then every page and every HTML mail that
shows it is parsed: no script element, no event-handler attribute, no injected tag may
appear, and the text must still be there, escaped, for people to read.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from flask_recovery import Staff, tokens
from flask_recovery.models import FollowUp

SCRIPT = '<script>alert("xss-1")</script>'
ATTR = '"><img src=x onerror=alert("xss-2")>'
SQUOTE = "' onmouseover='alert(\"xss-3\")' data-xss='"
STYLE = "</textarea></title><svg onload=alert('xss-4')>"
HOSTILE = f"{SCRIPT} {ATTR} {SQUOTE} {STYLE}"
CONFIG = {
    "MAIL_DEFAULT_SENDER": "Velvet salon <hello@salon.test>",
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
    "RECOVERY_MANAGER_EMAILS": ["boss@salon.test"],
}
pytestmark = pytest.mark.config(**CONFIG)
API = "/recovery/api"


class Inspector(HTMLParser):
    """Collects what a browser would execute: script elements and ``on*`` attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.in_script = True
        if tag in ("img", "svg", "iframe", "object", "embed") and any("x" == (v or "") for _, v in attrs):
            self.problems.append(f"injected <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "data-xss":
                self.problems.append(f"attribute {name}={value!r} on <{tag}>")
            if value and "javascript:" in value.lower():
                self.problems.append(f"javascript: URL in {name}")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and "xss-" in data:
            self.problems.append(f"script runs {data[:60]!r}")


def assert_inert(html: str, where: str, must_show: bool = True) -> None:
    inspector = Inspector()
    inspector.feed(html)
    assert not inspector.problems, (where, inspector.problems)
    for raw in (SCRIPT, ATTR, STYLE, "<img src=x", "<svg onload"):
        assert raw not in html, (where, raw)
    if must_show:
        assert "&lt;script&gt;alert(" in html, (where, "the hostile text is not shown escaped")


def send(runner, command: str, expected: str) -> None:
    result = runner.invoke(args=["recovery", command])
    assert expected in result.output, result.output


def wait_for(messages, n):
    deadline = time.monotonic() + 10
    while len(messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_hostile_text_is_inert_in_every_page_and_mail(app, client, host, runner, smtp_server):
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", smtp_server.port, "hello@salon.test"
    host.add_booking("b1", client_id="c1", client_name=f"Zoe {HOSTILE}", service=f"Cut {HOSTILE}", locale="en")
    host.add_booking("b2", client_id="c1", client_name=f"Zoe {HOSTILE}", service=f"Cut {HOSTILE}", locale="en")
    soon = datetime.now(UTC) + timedelta(days=3)
    host.add_booking(
        "b3", client_id="c1", starts_at=soon, ends_at=soon + timedelta(hours=1), status="booked", locale="en"
    )
    evil_admin = Staff(id="s-evil", name=f"Eve {HOSTILE}", role="admin")
    evil_manager = Staff(id="s-evil-m", name=f"Mal {HOSTILE}", role="manager")

    host.staff = evil_admin
    case = client.post(
        f"{API}/bookings/b1/incidents",
        json={"category": "result", "severity": "major", "description": HOSTILE, "corrective_action": HOSTILE},
    ).get_json()
    conduct = client.post(
        f"{API}/bookings/b2/incidents", json={"severity": "major", "conduct": True, "description": HOSTILE}
    ).get_json()
    gift = client.post(
        f"{API}/incidents/{case['id']}/compensations", json={"kind": "discount", "amount": 5000, "note": HOSTILE}
    ).get_json()
    assert gift["status"] == "granted"
    request = client.post(
        f"{API}/incidents/{case['id']}/compensations", json={"kind": "gift", "amount": 900_000, "note": HOSTILE}
    ).get_json()
    second = client.post(
        f"{API}/incidents/{case['id']}/compensations", json={"kind": "gift", "amount": 800_000, "note": HOSTILE}
    ).get_json()
    assert (request["status"], second["status"]) == ("pending_approval", "pending_approval")
    assert client.post(f"{API}/incidents/{case['id']}/resolve", json={"note": HOSTILE}).status_code == 200

    host.staff = evil_manager
    assert client.post(f"{API}/compensations/{request['id']}/reject", json={"note": HOSTILE}).status_code == 200
    flag = client.post(f"{API}/clients/c1/flags", json={"type": "vip", "reason": HOSTILE}).get_json()
    assert client.post(f"{API}/flags/{flag['id']}/acknowledge", json={"note": HOSTILE}).status_code == 200
    other = client.post(f"{API}/clients/c1/flags", json={"type": "conduct", "reason": HOSTILE}).get_json()
    assert client.post(f"{API}/flags/{other['id']}/lift", json={"reason": HOSTILE}).status_code == 200
    assert client.post(f"{API}/clients/c1/hold", json={"reason": HOSTILE}).status_code == 201

    # the client's check-in, and her answer with a hostile comment
    send(runner, "send-followups", "sent 1")
    wait_for(smtp_server.messages, 1)
    checkin = smtp_server.messages[0]
    assert_inert(checkin.get_body(("html",)).get_content(), "check-in mail", must_show=False)
    assert "&lt;script&gt;" in checkin.get_body(("html",)).get_content()  # her name, the service, what will change
    with app.app_context():
        followup = app.db.session.query(FollowUp).one()
        token = tokens.make_token("answer", followup.id)
        unsubscribe = tokens.make_token("unsubscribe", followup.id)
        app.db.session.remove()
    answer_page = client.get(f"/recovery/followups/{token}/answer/not_right")
    assert_inert(answer_page.text, "answer page", must_show=False)
    answered = client.post(f"/recovery/followups/{token}/answer", data={"choice": "not_right", "comment": HOSTILE})
    assert answered.status_code == 200
    assert_inert(answered.text, "answer done", must_show=False)
    assert_inert(client.get(f"/recovery/followups/{token}/answer/good").text, "used link", must_show=False)
    assert_inert(client.get(f"/recovery/followups/{unsubscribe}/unsubscribe").text, "unsubscribe", must_show=False)

    # the managers' mail: the request for approval and the unhappy answer
    send(runner, "send-notifications", "sent 3")
    wait_for(smtp_server.messages, 4)
    for mail in smtp_server.messages[1:]:
        assert_inert(mail.get_body(("html",)).get_content(), f"staff mail {mail['Subject']}")

    # every staff page that shows any of it, for a manager (who reads conduct notes too)
    host.staff = Staff(id="s-m2", name="Marina", role="manager")
    pages = {
        "booking b1": "/recovery/bookings/b1",
        "booking b2 (conduct)": "/recovery/bookings/b2",
        "client": "/recovery/clients/c1",
        "client from a booking": "/recovery/clients/c1?booking=b1",
        "approvals": "/recovery/approvals",
        "budget": "/recovery/budget",
        "journal": "/recovery/journal",
    }
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, (where, response.status_code)
        assert_inert(response.text, where, must_show=where not in ("journal",))
    # a page re-shown with a form error keeps the typed text inert too
    refused = client.post(
        "/recovery/bookings/b1/incidents", data={"category": "", "severity": "minor", "description": HOSTILE}
    )
    assert refused.status_code == 422
    assert_inert(refused.text, "incident form with an error")
    refused = client.post(
        f"/recovery/incidents/{case['id']}/compensations",
        data={"kind": "gift", "amount": "x" + HOSTILE, "note": HOSTILE},
    )
    assert refused.status_code == 422
    assert_inert(refused.text, "compensation form with an error")
    # the checkout widget a host embeds
    with app.test_request_context():
        host.staff = Staff(id="s-m2", name="Marina", role="manager")
        widget = str(app.recovery.widget("b1"))
        badge = str(app.recovery.badge("b3"))  # her next visit: a badge is drawn
    assert_inert(widget, "widget")
    assert 'data-recovery-flag="conduct"' in badge  # a real badge (the conduct warning wins), not an empty one
    assert_inert(badge, "badge", must_show=False)
    # JSON is JSON: served as application/json, never as a page
    for url in (f"{API}/bookings/b1", f"{API}/clients/c1", f"{API}/clients/c1/flags"):
        response = client.get(url)
        assert response.mimetype == "application/json", url
    assert conduct["conduct"] is True

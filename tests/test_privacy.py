"""Privacy: forget-client leaves nothing that names the client; export gives her everything.

One client, Zenobia Quillfeather, goes through every feature of the extension with
distinctive text: incidents (with a conduct note), compensations with vouchers and a
manager's decision, check-in mail sent through a real SMTP server and answered with a
comment, the managers' mail, flags with an acknowledgement and a booking hold. Then she
is erased, and every column of every ``recovery_*`` table (reflected from the database,
so a table added later is scanned too) is searched for her name, address and texts.
Another client's data must be untouched, the anonymous figures identical, her old links
dead (a friendly 4xx page) and her vouchers refused.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from flask_recovery import Conflict
from flask_recovery.domain import privacy
from flask_recovery.models import (
    AuditEntry,
    BookingHold,
    Compensation,
    Erasure,
    Flag,
    FollowUp,
    Incident,
    Notification,
    Visit,
    utcnow,
)

API = "/recovery/api"
CONFIG = {
    "MAIL_DEFAULT_SENDER": "Velvet salon <hello@salon.test>",
    "RECOVERY_BASE_URL": "https://salon.example.com",
    "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
    "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
    "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
    "RECOVERY_MANAGER_EMAILS": ["boss@salon.test"],
}
pytestmark = pytest.mark.config(**CONFIG)


class Person:
    """A client and the distinctive text written about her."""

    def __init__(self, client_id: str, first: str, last: str, email: str, marker: str) -> None:
        self.client_id, self.first, self.last, self.email, self.marker = client_id, first, last, email, marker
        self.name = f"{first} {last}"

    def text(self, what: str) -> str:
        """A free text that names her: every one carries her marker and her surname."""
        return f"{what} for {self.name} [{self.marker}]"

    @property
    def needles(self) -> list[str]:
        """What must not survive her erasure anywhere."""
        return [self.first, self.last, self.email, self.email.split("@")[0], self.marker]


FIXED_NOW = utcnow() + timedelta(days=1)
ZEN = Person("c-zen", "Zenobia", "Quillfeather", "zenobia.q@client.test", "ZQ-SECRET")
BART = Person("c-bart", "Bartholomew", "Oakes", "bart.oakes@client.test", "BO-KEEP")


def point_mail_at(app, port: int) -> None:
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", port, "Velvet salon <hello@salon.test>"


def wait_for(messages: list, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def ok(response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()


def links_in(message) -> dict[str, str]:
    """The answer and unsubscribe links of a check-in mail, as local paths."""
    text = message.get_body(("plain",)).get_content()
    urls = re.findall(r"https://salon\.example\.com(/recovery/followups/\S+)", text)
    found = {}
    for path in urls:
        if path.endswith("/unsubscribe"):
            found["unsubscribe"] = path
        else:
            found[path.rsplit("/", 1)[1]] = path
    assert set(found) == {"good", "not_right", "unsubscribe"}, urls
    return found


def build_history(app, client, host, runner, smtp_server, person: Person, prefix: str) -> dict[str, Any]:
    """Take ``person`` through every feature; return the ids and links made on the way."""
    made: dict[str, Any] = {"bookings": []}
    for n in (1, 2, 3, 4):
        host.add_booking(
            f"{prefix}{n}",
            client_id=person.client_id,
            client_name=person.name,
            client_email=person.email,
            locale="en",
            price=100_000,
        )
        made["bookings"].append(f"{prefix}{n}")

    # Recognize: incidents, resolved with a note; a conduct note on the fourth visit
    host.login("admin")
    incidents = []
    for booking_id in made["bookings"][:3]:
        body = ok(
            client.post(
                f"{API}/bookings/{booking_id}/incidents",
                json={
                    "category": "result",
                    "severity": "major",
                    "description": person.text("The colour burned"),
                    "corrective_action": person.text("We patch-test"),
                },
            ),
            201,
        )
        incidents.append(body["id"])
    conduct = ok(
        client.post(
            f"{API}/bookings/{made['bookings'][3]}/incidents",
            json={"severity": "major", "conduct": True, "description": person.text("Shouted at Olga")},
        ),
        201,
    )
    made["incidents"], made["conduct"] = incidents, conduct["id"]

    # Resolve: a voucher within the admin's authority, a request above it, decided by the manager
    granted = ok(
        client.post(
            f"{API}/incidents/{incidents[0]}/compensations",
            json={"kind": "discount", "amount": 20_000, "note": person.text("Discount reason")},
        ),
        201,
    )
    assert granted["status"] == "granted" and granted["voucher_code"]
    spare = ok(
        client.post(f"{API}/incidents/{incidents[1]}/compensations", json={"kind": "percent_discount", "percent": 10}),
        201,
    )
    requested = ok(
        client.post(
            f"{API}/incidents/{incidents[1]}/compensations",
            json={"kind": "discount", "amount": 200_000, "note": person.text("Wedding ruined")},
        ),
        201,
    )
    assert requested["status"] == "pending_approval"
    host.login("manager")
    approved = ok(client.post(f"{API}/compensations/{requested['id']}/approve", json={"note": person.text("Approved")}))
    assert approved["voucher_code"]
    made["vouchers"] = [granted["voucher_code"], approved["voucher_code"], spare["voucher_code"]]
    for incident_id in incidents[:2]:
        ok(client.post(f"{API}/incidents/{incident_id}/resolve", json={"note": person.text("Resolved")}))

    # Next visit: flags with an acknowledgement and a lift reason, a booking hold
    _flags_and_hold(app, client, host, person, made)

    # Reconnect: check-ins over real SMTP, one answered "still not right" with a comment
    point_mail_at(app, smtp_server.port)
    before = len(smtp_server.messages)
    result = runner.invoke(args=["recovery", "send-followups"])
    assert result.exit_code == 0 and "sent 2" in result.output, result.output
    wait_for(smtp_server.messages, before + 2)
    mails = [m for m in smtp_server.messages[before:] if person.email in m["To"]]
    assert len(mails) == 2 and all(person.first in m["Subject"] for m in mails)
    made["links"] = [links_in(m) for m in mails]
    answer = made["links"][0]["not_right"]
    assert client.get(answer).status_code == 200
    posted = client.post(
        answer.rsplit("/", 1)[0], data={"choice": "not_right", "comment": person.text("Fringe still uneven")}
    )
    assert posted.status_code == 200, posted.text[:300]

    # a third case resolved later: its check-in is planned but not yet due
    app.config["RECOVERY_FOLLOWUP_DELAY"] = timedelta(days=2)
    host.login("admin")
    ok(client.post(f"{API}/incidents/{incidents[2]}/resolve", json={}))
    assert "sent 0" in runner.invoke(args=["recovery", "send-followups"]).output
    app.config["RECOVERY_FOLLOWUP_DELAY"] = timedelta(0)

    # the managers' mail: the request for approval and the unhappy answer
    before = len(smtp_server.messages)
    sent = runner.invoke(args=["recovery", "send-notifications"])
    assert "sent 2" in sent.output, sent.output
    wait_for(smtp_server.messages, before + 2)
    staff_mail = smtp_server.messages[before:]
    assert any(person.first in m["Subject"] for m in staff_mail)
    host.login(None)
    return made


def _flags_and_hold(app, client, host, person: Person, made: dict[str, Any]) -> None:
    """Flags with an acknowledgement and a lift reason, and booking holds, through the API."""
    cid = person.client_id
    host.login("manager")
    vip = ok(client.post(f"{API}/clients/{cid}/flags", json={"type": "vip", "reason": person.text("Extra care")}), 201)
    ok(client.post(f"{API}/flags/{vip['id']}/acknowledge", json={"note": person.text("Will greet her myself")}))
    rude = ok(
        client.post(f"{API}/clients/{cid}/flags", json={"type": "conduct", "reason": person.text("Was rude")}), 201
    )
    ok(client.post(f"{API}/flags/{rude['id']}/lift", json={"reason": person.text("Apologised")}))
    ok(client.post(f"{API}/clients/{cid}/hold", json={"reason": person.text("Call first")}), 201)
    ok(client.post(f"{API}/clients/{cid}/hold/lift", json={"reason": person.text("Called us")}))
    ok(client.post(f"{API}/clients/{cid}/hold", json={"reason": person.text("Call before booking")}), 201)
    with app.app_context():  # the host tells the extension about her visits
        app.recovery.booking_created(made["bookings"][3])
        app.recovery.visit_completed(made["bookings"][2])
        app.db.session.remove()


def scan(app) -> dict[str, list[str]]:
    """Every value of every column of every ``recovery_*`` table, as text, per table."""
    with app.app_context():
        engine = app.db.engine
        reflected = sa.MetaData()
        reflected.reflect(engine)
        found: dict[str, list[str]] = {}
        with engine.connect() as connection:
            for name, table in reflected.tables.items():
                if not name.startswith("recovery_"):
                    continue
                found[name] = [
                    json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
                    for row in connection.execute(sa.select(table))
                    for value in row
                    if value is not None
                ]
        return found


def hits(values: dict[str, list[str]], person: Person) -> list[tuple[str, str]]:
    return [
        (table, value)
        for table, items in values.items()
        for value in items
        for needle in person.needles
        if needle.lower() in value.lower()
    ]


def figures(app) -> dict[str, Any]:
    """The anonymous figures: everything the KPI journal counts (no text, no addresses)."""
    with app.app_context():
        s = app.db.session
        rows = {
            "incidents": s.execute(
                sa.select(
                    Incident.id,
                    Incident.booking_id,
                    Incident.client_id,
                    Incident.category,
                    Incident.severity,
                    Incident.conduct,
                    Incident.status,
                    Incident.recorded_at,
                    Incident.resolved_at,
                    Incident.closed_at,
                    Incident.reopened_at,
                    Incident.reopen_count,
                    Incident.visit_ended_at,
                ).order_by(Incident.id)
            ).all(),
            "compensations": s.execute(
                sa.select(
                    Compensation.id,
                    Compensation.kind,
                    Compensation.amount,
                    Compensation.percent,
                    Compensation.status,
                    Compensation.charged_to,
                    Compensation.charged_month,
                    Compensation.created_at,
                    Compensation.decided_at,
                    Compensation.redeemed_at,
                ).order_by(Compensation.id)
            ).all(),
            "answers": s.execute(
                sa.select(FollowUp.id, FollowUp.kind, FollowUp.sent_at, FollowUp.answer, FollowUp.answered_at).order_by(
                    FollowUp.id
                )
            ).all(),
            "visits": s.execute(sa.select(Visit.booking_id, Visit.client_id, Visit.starts_at, Visit.status)).all(),
            "notifications": s.execute(sa.select(Notification.id, Notification.kind, Notification.status)).all(),
        }
        rows["journal"] = _journal_figures(app)
        s.remove()
        return rows


def _journal_figures(app):
    """The KPI journal's own figures (issue 6) for a period around now, at a fixed moment."""
    from flask_recovery.domain import stats

    period = stats.make_period()
    data = stats.journal(app.db.session, period, now=FIXED_NOW)
    data.pop("generated_at", None)
    return json.dumps(data, default=str, sort_keys=True)


@pytest.fixture
def world(app, client, host, runner, smtp_server):
    zen = build_history(app, client, host, runner, smtp_server, ZEN, "z")
    bart = build_history(app, client, host, runner, smtp_server, BART, "b")
    return zen, bart


def test_forget_client_leaves_nothing_that_names_her(app, client, host, runner, smtp_server, world):
    zen, bart = world
    before = scan(app)
    assert hits(before, ZEN) and hits(before, BART), "the history did not store what it should"
    stored = {table for table, _ in hits(before, ZEN)}
    assert {"recovery_incidents", "recovery_compensations", "recovery_followups", "recovery_flags"} <= stored
    assert "recovery_booking_holds" in stored
    figures_before = figures(app)
    journal = json.loads(figures_before["journal"])
    assert journal["incidents"]["total"] == 8 and journal["followups"], "the journal counted nothing"

    result = runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"Erased client {ZEN.client_id!r}" in result.output

    after = scan(app)
    assert hits(after, ZEN) == [], "personal data survived forget-client"
    # the other client is untouched, value for value
    assert sorted(v for _, v in hits(after, BART)) == sorted(v for _, v in hits(before, BART))
    assert figures(app) == figures_before, "the anonymous figures changed"

    with app.app_context():
        s = app.db.session
        assert s.get(Erasure, ZEN.client_id) is not None and s.get(Erasure, BART.client_id) is None
        rows = s.scalars(sa.select(FollowUp).where(FollowUp.client_id == ZEN.client_id)).all()
        assert {r.status for r in rows} == {"sent", "cancelled"}
        (planned,) = [r for r in rows if r.status == "cancelled"]
        assert planned.last_error == "erased" and planned.sent_at is None
        assert all(r.voided_at is not None and r.email is None and r.client_name is None for r in rows)
        assert all(r.answer is None or r.answer == "not_right" for r in rows)
        flags = s.scalars(sa.select(Flag).where(Flag.client_id == ZEN.client_id)).all()
        assert "lifted" in {f.status for f in flags} and "void" in {f.status for f in flags}
        assert "active" not in {f.status for f in flags}
        assert not s.scalars(sa.select(BookingHold.active).where(BookingHold.client_id == ZEN.client_id)).all()[0]
        bart_rows = s.scalars(sa.select(FollowUp).where(FollowUp.client_id == BART.client_id)).all()
        assert all(r.voided_at is None for r in bart_rows)
        assert "active" in s.scalars(sa.select(Flag.status).where(Flag.client_id == BART.client_id)).all()
        (entry,) = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "client.erased")).all()
        assert (entry.client_id, entry.actor_id, entry.subject_id) == (ZEN.client_id, None, ZEN.client_id)
        assert entry.data["links_voided"] == 3 and entry.data["followups_cancelled"] == 1
        assert recovery_page_of_case_shows_no_text(app, client, host, zen["bookings"][0])
        s.remove()


def recovery_page_of_case_shows_no_text(app, client, host, booking_id: str) -> bool:
    """The staff page of her booking still works, without the erased texts."""
    host.login("manager")
    page = client.get(f"/recovery/bookings/{booking_id}")
    api = client.get(f"{API}/bookings/{booking_id}")
    host.login(None)
    assert page.status_code == 200 and api.status_code == 200
    text = page.text + api.get_data(as_text=True)
    return ZEN.marker not in text


def test_links_sent_before_stop_working_with_a_friendly_page(app, client, runner, world):
    zen, bart = world
    unanswered = zen["links"][1]
    assert client.get(unanswered["good"]).status_code == 200  # still alive before
    runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    for link in unanswered.values():
        response = client.get(link, headers={"Accept-Language": "en"})
        assert response.status_code == 409, link
        assert "This link is no longer valid" in response.text and response.mimetype == "text/html"
    posted = client.post(unanswered["good"].rsplit("/", 1)[0], data={"choice": "good"})
    assert posted.status_code == 409
    one_click = client.post(zen["links"][0]["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 409
    # the other client's links still work
    assert client.get(bart["links"][1]["good"]).status_code == 200
    with app.app_context():
        assert (
            app.db.session.scalar(sa.select(sa.func.count()).select_from(FollowUp).where(FollowUp.answer == "good"))
            == 0
        )


def test_her_vouchers_are_refused_and_others_still_work(app, host, runner, world):
    zen, bart = world
    later = host.add_booking("z9", client_id=ZEN.client_id, client_name=ZEN.name, client_email=ZEN.email)
    bart_later = host.add_booking("b9", client_id=BART.client_id, client_name=BART.name, client_email=BART.email)
    with app.app_context():
        used = app.recovery.redeem_voucher(zen["vouchers"][2], later.id)  # used before the erasure
        assert used.redeemed_booking_id == later.id
    runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    with app.app_context():
        for code in zen["vouchers"][:2]:
            with pytest.raises(Conflict, match="no longer valid"):
                app.recovery.redeem_voucher(code, later.id)
        redeemed = app.db.session.scalar(sa.select(Compensation).where(Compensation.voucher_code == zen["vouchers"][2]))
        assert redeemed.redeemed_booking_id == later.id  # a used voucher stays a figure
        assert app.recovery.redeem_voucher(bart["vouchers"][0], bart_later.id).redeemed_at is not None


def test_export_gives_her_data_as_json_with_internal_notes(app, runner, tmp_path, world):
    with app.app_context():
        data = app.recovery.export_client(ZEN.client_id)
    text = json.dumps(data, ensure_ascii=False)  # JSON-ready as returned
    assert data["client_id"] == ZEN.client_id and data["erased_at"] is None
    assert len(data["incidents"]) == 4 and len(data["compensations"]) == 3 and len(data["followups"]) == 3
    assert data["incidents"][0]["description"] == ZEN.text("The colour burned")  # an internal note
    assert ZEN.text("Shouted at Olga") in text  # the conduct note too
    notes = {c["note"] for c in data["compensations"]} | {c["decision_note"] for c in data["compensations"]}
    assert {ZEN.text("Discount reason"), ZEN.text("Wedding ruined"), ZEN.text("Approved")} <= notes
    assert ZEN.text("Fringe still uneven") in {f["comment"] for f in data["followups"]}
    assert {f["email"] for f in data["followups"]} == {ZEN.email}
    assert ZEN.text("Will greet her myself") in {f["acknowledgement"] for f in data["flags"]}
    assert {h["reason"] for h in data["booking_holds"]} == {ZEN.text("Call first"), ZEN.text("Call before booking")}
    assert ZEN.text("Called us") in {h["lift_reason"] for h in data["booking_holds"]}
    assert ZEN.text("Apologised") in {f["lift_reason"] for f in data["flags"]}
    assert len(data["visits"]) == 4
    assert {a["action"] for a in data["audit"]} >= {"incident.recorded", "compensation.approved", "feedback.not_right"}
    assert BART.marker not in text and BART.email not in text

    out = tmp_path / "zen.json"
    result = runner.invoke(args=["recovery", "export-client", ZEN.client_id, "--output", str(out)])
    assert result.exit_code == 0, result.output
    from_file = json.loads(out.read_text(encoding="utf-8"))
    assert from_file["incidents"] == data["incidents"] and from_file["flags"] == data["flags"]
    assert out.stat().st_mode & 0o777 == 0o600  # personal data: the owner's eyes only
    existing = tmp_path / "shared.json"
    existing.write_text("old")
    existing.chmod(0o644)
    assert runner.invoke(args=["recovery", "export-client", ZEN.client_id, "--output", str(existing)]).exit_code == 0
    assert existing.stat().st_mode & 0o777 == 0o600 and json.loads(existing.read_text())["client_id"] == ZEN.client_id
    refused = runner.invoke(
        args=["recovery", "export-client", ZEN.client_id, "--output", str(tmp_path / "no" / "x.json")]
    )
    assert refused.exit_code != 0 and "cannot write" in refused.output and "Traceback" not in refused.output

    runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    printed = runner.invoke(args=["recovery", "export-client", ZEN.client_id])
    assert printed.exit_code == 0
    erased = json.loads(printed.output)
    assert erased["erased_at"] is not None and len(erased["incidents"]) == 4
    assert not [needle for needle in ZEN.needles if needle.lower() in printed.output.lower()]


def test_forget_client_is_idempotent(app, runner, world):
    first = runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    snapshot = scan(app)
    second = runner.invoke(args=["recovery", "forget-client", ZEN.client_id, "--yes"])
    assert second.exit_code == 0 and "was already erased" in second.output and "nothing left" in second.output
    assert scan(app) == snapshot  # no new audit line, nothing changed
    assert first.output != second.output


def test_the_cli_asks_first_and_explains_a_bad_id(app, runner, host, client, session):
    host.add_booking("b1", client_id="c-ask")
    host.login("admin")
    ok(
        client.post(
            f"{API}/bookings/b1/incidents",
            json={"category": "late", "severity": "minor", "description": "Late, says Ada"},
        ),
        201,
    )
    host.login(None)

    declined = runner.invoke(args=["recovery", "forget-client", "c-ask"], input="n\n")
    assert declined.exit_code != 0 and "Erase everything that names client 'c-ask'?" in declined.output
    assert "Aborted" in declined.output
    session.expire_all()
    assert session.get(Erasure, "c-ask") is None
    assert session.scalar(sa.select(Incident.description)) == "Late, says Ada"

    accepted = runner.invoke(args=["recovery", "forget-client", "c-ask"], input="y\n")
    assert accepted.exit_code == 0 and "Erased client 'c-ask'" in accepted.output
    session.expire_all()
    assert session.get(Erasure, "c-ask") is not None and session.scalar(sa.select(Incident.description)) == ""

    for bad in ("", "   ", "x" * 65):
        result = runner.invoke(args=["recovery", "forget-client", bad, "--yes"])
        assert result.exit_code == 2 and "a client id is 1 to 64 characters" in result.output, result.output
        assert "Traceback" not in result.output
    unknown = runner.invoke(args=["recovery", "forget-client", "c-nobody", "--yes"])
    assert unknown.exit_code == 0 and "holds no data about client 'c-nobody'" in unknown.output
    session.expire_all()
    assert session.get(Erasure, "c-nobody") is None  # a typo silences nobody's mail


def test_an_answer_racing_the_erasure_cannot_store_her_comment(app, session, host):
    """forget-client first: the answer that arrives after it finds the link void."""
    from flask_recovery.domain import feedback
    from flask_recovery.tokens import UsedLink

    from .test_followup_mail import make_followup

    booking, incident, followup = make_followup(session, host, locale="en", client_id="c-race")
    privacy.forget_client(session, "c-race")
    with pytest.raises(UsedLink):
        feedback.record_answer(session, followup.id, "not_right", "my secret comment")
    session.expire_all()
    assert session.get(FollowUp, followup.id).comment is None


def test_a_failed_erasure_changes_nothing(app, session, host, monkeypatch):
    from .test_followup_mail import make_followup

    booking, incident, followup = make_followup(session, host, locale="en", client_id="c-fail")
    audit_lines = session.query(AuditEntry).count()

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(privacy, "audit", broken)
    with pytest.raises(RuntimeError):
        privacy.forget_client(session, "c-fail")
    monkeypatch.undo()
    session.expire_all()
    assert session.get(Erasure, "c-fail") is None
    assert session.get(FollowUp, followup.id).email == "anna@client.test"
    assert session.get(Incident, incident.id).description
    assert session.query(AuditEntry).count() == audit_lines


def test_the_audit_trail_holds_ids_and_codes_only(app, world):
    """Whatever any feature writes into an audit line's ``data``: numbers, flags and short codes."""
    code = re.compile(r"^[a-z0-9_.:-]{0,64}$")
    with app.app_context():
        entries = app.db.session.scalars(sa.select(AuditEntry)).all()
        assert len(entries) > 20
        for entry in entries:
            for field, value in (entry.data or {}).items():
                assert (
                    value is None or isinstance(value, bool | int) or (isinstance(value, str) and code.match(value))
                ), (
                    entry.action,
                    field,
                    value,
                )
        app.db.session.remove()


def test_a_request_left_pending_cannot_give_an_erased_client_a_voucher(app, client, host, runner):
    host.add_booking("p1", client_id="c-pending", client_name="Perpetua Penn", client_email="pp@client.test")
    host.login("admin")
    incident = ok(
        client.post(f"{API}/bookings/p1/incidents", json={"category": "late", "severity": "major", "description": "x"}),
        201,
    )
    requested = ok(
        client.post(
            f"{API}/incidents/{incident['id']}/compensations",
            json={"kind": "discount", "amount": 900_000, "note": "above the limit"},
        ),
        201,
    )
    assert requested["status"] == "pending_approval"
    assert runner.invoke(args=["recovery", "forget-client", "c-pending", "--yes"]).exit_code == 0
    host.login("manager")
    refused = client.post(f"{API}/compensations/{requested['id']}/approve", json={})
    assert refused.status_code == 409 and "erased" in refused.json["error"]["message"]
    assert client.post(f"{API}/compensations/{requested['id']}/reject", json={}).status_code == 200
    with app.app_context():
        row = app.db.session.get(Compensation, requested["id"])
        assert row.status == "rejected" and row.voucher_code is None

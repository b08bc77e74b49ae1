"""Money adds up per visit: refunds never pass the visit's price, one redo per visit.

Decided in the rule, under the booking's lock, for grants and for approvals; refusals
name the rule (``refund_exceeds_price``, ``redo_already_given``, ``incident_closed``) and
are audited. The approval card (queue page and mail) shows the visit's price and what was
already given on it, with the client and what happened.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from flask_recovery import domain
from flask_recovery.domain.compensations import approval_cards
from flask_recovery.errors import Conflict
from flask_recovery.models import AuditEntry, BudgetUsage, Compensation, Notification

API = "/recovery/api"
PRICE = 150000  # the conftest booking's price


def new_incident(client, host, booking_id="b1", **fields):
    who = host.staff
    host.login("admin")
    body = {"category": "result", "severity": "major", "description": "Colour came out orange", **fields}
    response = client.post(f"{API}/bookings/{booking_id}/incidents", json=body)
    assert response.status_code == 201, response.get_json()
    host.staff = who
    return response.get_json()["id"]


def grant(client, incident_id, **body):
    return client.post(f"{API}/incidents/{incident_id}/compensations", json=body)


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def refusals(session, action="compensation.refused"):
    return [e.data["reason"] for e in session.query(AuditEntry).filter_by(action=action).order_by(AuditEntry.id)]


def legacy_request(session, incident_id, kind, amount, *, booking_id="b1", requested_by="s-admin"):
    """A pending request as one filed before the per-visit rule existed (nothing checked it)."""
    row = Compensation(
        incident_id=incident_id,
        booking_id=booking_id,
        client_id="c1",
        location="center",
        kind=kind,
        amount=amount,
        currency="EUR",
        status="pending_approval",
        requested_by=requested_by,
        requested_by_role="admin",
        requested_by_name="Irina",
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.commit()
    return row.id


# -- refunds -------------------------------------------------------------------------------


def test_refunds_on_one_visit_never_pass_its_price_across_incidents(client, host, booking, session):
    colour = new_incident(client, host)
    billing = new_incident(client, host, category="billing", description="Charged twice")
    host.login("manager")
    assert grant(client, colour, kind="refund", amount=100000).get_json()["status"] == "granted"

    too_much = grant(client, billing, kind="refund", amount=60000)
    assert too_much.status_code == 409
    error = error_of(too_much)
    assert error["code"] == "refund_exceeds_price" and error["field"] == "amount"
    assert error["message"] == (
        "Refunds on this visit would come to €1,600.00, more than its price (€1,500.00): "
        "at most €500.00 more can be refunded."
    )
    assert grant(client, billing, kind="refund", amount=50000).get_json()["status"] == "granted"
    nothing_left = grant(client, colour, kind="refund", amount=1)
    assert nothing_left.status_code == 409 and error_of(nothing_left)["message"] == (
        "Refunds on this visit already come to its price (€1,500.00): nothing more can be refunded."
    )

    rows = session.query(Compensation).all()
    assert sorted(c.amount for c in rows) == [50000, 100000]
    assert session.query(BudgetUsage).one().spent == 150000  # the refused ones charged nothing
    assert refusals(session) == ["refund_exceeds_price", "refund_exceeds_price"]


def test_a_pending_refund_counts_and_a_rejected_one_does_not(client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("admin")  # an admin may not refund alone: each refund is a request
    first = grant(client, incident_id, kind="refund", amount=PRICE)
    assert first.get_json()["status"] == "pending_approval"
    second = grant(client, incident_id, kind="refund", amount=PRICE, note="paid twice")
    assert second.status_code == 409 and error_of(second)["code"] == "refund_exceeds_price"
    assert session.query(Notification).count() == 1  # the refused request asks nobody

    host.login("manager")
    assert client.post(f"{API}/compensations/{first.get_json()['id']}/reject", json={}).status_code == 200
    host.login("admin")
    again = grant(client, incident_id, kind="refund", amount=PRICE)
    assert again.status_code == 201 and again.get_json()["status"] == "pending_approval"


def test_other_remedies_do_not_count_against_the_refund(client, host, booking):
    incident_id = new_incident(client, host)
    host.login("manager")
    assert grant(client, incident_id, kind="discount", amount=PRICE).status_code == 201
    assert grant(client, incident_id, kind="gift", amount=20000).status_code == 201
    assert grant(client, incident_id, kind="refund", amount=PRICE).get_json()["status"] == "granted"


def test_refunds_on_another_visit_are_counted_there(client, host, booking):
    host.add_booking("b2", price=40000)
    first = new_incident(client, host)
    second = new_incident(client, host, booking_id="b2")
    host.login("manager")
    assert grant(client, first, kind="refund", amount=PRICE).status_code == 201
    assert grant(client, second, kind="refund", amount=40000).status_code == 201
    over = grant(client, second, kind="refund", amount=1)
    assert over.status_code == 409 and "€400.00" in error_of(over)["message"]


# -- redo -------------------------------------------------------------------------------------


def test_a_visit_gets_one_redo(client, host, booking, session):
    colour = new_incident(client, host)
    late = new_incident(client, host, category="late", description="Started late")
    host.login("admin")
    assert grant(client, colour, kind="redo").get_json()["status"] == "granted"
    twice = grant(client, late, kind="redo")
    assert twice.status_code == 409
    error = error_of(twice)
    assert error["code"] == "redo_already_given" and error["field"] == "kind"
    assert error["message"] == (
        "This visit already has a free redo, given or waiting for a manager: a visit gets one redo."
    )
    assert [c.kind for c in session.query(Compensation)] == ["redo"]
    assert refusals(session) == ["redo_already_given"]


@pytest.mark.config(
    RECOVERY_AUTHORITY={
        "admin": {"per_grant": 100000, "per_month": None, "kinds": "all"},
        "manager": {"per_grant": None, "per_month": None, "kinds": "all"},
    }
)
def test_a_pending_redo_counts_too(client, host, booking):
    incident_id = new_incident(client, host)
    host.login("admin")  # the redo (1500.00) is above her 1000.00: a request
    assert grant(client, incident_id, kind="redo").get_json()["status"] == "pending_approval"
    host.login("manager")
    assert error_of(grant(client, incident_id, kind="redo"))["code"] == "redo_already_given"


# -- approvals re-check ----------------------------------------------------------------------


def test_an_approver_cannot_approve_the_second_full_refund(app, client, host, booking, session):
    """Two full refunds requested before the rule existed: the first is approved, the second refused."""
    incident_id = new_incident(client, host)
    first = legacy_request(session, incident_id, "refund", PRICE)
    second = legacy_request(session, incident_id, "refund", PRICE)
    manager = host.login("manager")
    with app.app_context():
        approved = domain.decide_compensation(
            session, first, manager, approve=True, booking_loader=app.recovery.load_booking
        )
        assert approved.status == "granted"
        with pytest.raises(Conflict) as refused:
            domain.decide_compensation(session, second, manager, approve=True, booking_loader=app.recovery.load_booking)
        assert refused.value.code == "refund_exceeds_price"
        assert str(refused.value) == (
            "Refunds on this visit already come to its price (€1,500.00): nothing more can be refunded."
        )
        assert session.get(Compensation, second).status == "pending_approval"
        assert domain.decide_compensation(session, second, manager, approve=False).status == "rejected"
    assert refusals(session, "compensation.decision_refused") == ["refund_exceeds_price"]
    assert session.query(BudgetUsage).one().spent == PRICE


def test_the_approvals_page_refuses_the_second_full_refund(client, host, booking, session):
    incident_id = new_incident(client, host)
    first = legacy_request(session, incident_id, "refund", PRICE)
    second = legacy_request(session, incident_id, "refund", 100000)
    host.login("manager")
    assert client.post(f"/recovery/compensations/{first}/approve").status_code == 303
    page = client.post(f"/recovery/compensations/{second}/approve")
    assert page.status_code == 409
    assert "Refunds on this visit already come to its price (€1,500.00)" in page.text
    assert session.get(Compensation, second).status == "pending_approval"


def test_approval_of_a_second_redo_is_refused(client, host, booking, session):
    incident_id = new_incident(client, host)
    first = legacy_request(session, incident_id, "redo", PRICE)
    second = legacy_request(session, incident_id, "redo", PRICE)
    host.login("manager")
    assert client.post(f"{API}/compensations/{first}/approve", json={}).status_code == 200
    refused = client.post(f"{API}/compensations/{second}/approve", json={})
    assert refused.status_code == 409 and error_of(refused)["code"] == "redo_already_given"
    assert refusals(session, "compensation.decision_refused") == ["redo_already_given"]


def test_approval_is_refused_on_a_closed_case_and_rejection_still_works(app, client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("admin")
    request_id = grant(client, incident_id, kind="refund", amount=50000).get_json()["id"]
    with app.app_context():
        domain.resolve_incident(session, incident_id, host.STAFF["admin"])
        domain.close_incident(session, incident_id, host.STAFF["admin"])
    host.login("manager")
    refused = client.post(f"{API}/compensations/{request_id}/approve", json={})
    assert refused.status_code == 409
    assert error_of(refused) == {
        "code": "incident_closed",
        "message": "The case is closed: reopen it before approving a remedy on it.",
    }
    assert session.get(Compensation, request_id).status == "pending_approval"
    assert session.query(BudgetUsage).count() == 0
    assert refusals(session, "compensation.decision_refused") == ["incident_closed"]
    assert client.post(f"{API}/compensations/{request_id}/reject", json={}).get_json()["status"] == "rejected"


# -- the approval card --------------------------------------------------------------------


def _given_and_asked(client, host):
    """A granted discount and redo on the visit, then an admin's refund request."""
    incident_id = new_incident(client, host, description="Colour came out orange, not copper")
    host.login("admin")
    assert grant(client, incident_id, kind="discount", amount=20000).get_json()["status"] == "granted"
    assert grant(client, incident_id, kind="redo").get_json()["status"] == "granted"
    asked = grant(client, incident_id, kind="refund", amount=30000, note="She paid by card")
    assert asked.get_json()["status"] == "pending_approval"
    return asked.get_json()["id"]


def test_the_approval_card_shows_the_price_and_what_was_given(app, client, host, booking, session):
    request_id = _given_and_asked(client, host)
    with app.app_context():
        (card,) = approval_cards(session, [session.get(Compensation, request_id)], app.recovery.load_bookings)
        assert (card.price, card.client_name, card.category, card.service) == (
            PRICE,
            "Anna Smirnova",
            "result",
            "Haircut",
        )
        assert [(g.kind, g.amount, g.status) for g in card.given] == [
            ("discount", 20000, "granted"),
            ("redo", PRICE, "granted"),
        ]
        assert card.to_dict()["given"][0]["kind"] == "discount"

    host.login("manager")
    page = client.get("/recovery/approvals").text
    assert "Anna Smirnova" in page and "Result not as agreed" in page
    assert "Colour came out orange, not copper" in page
    assert "Visit price" in page and "€1,500.00" in page
    assert "Discount on the next visit · €200.00 · Granted" in page
    assert "Free redo or another master · €1,500.00 · Granted" in page


def test_an_approval_card_of_a_first_request_says_nothing_was_given(client, host, booking):
    incident_id = new_incident(client, host)
    host.login("admin")
    grant(client, incident_id, kind="refund", amount=30000)
    host.login("manager")
    page = client.get("/recovery/approvals").text
    assert "Already given on this visit" in page and "Nothing yet." in page


def test_the_approvals_page_in_russian(client, host, booking):
    _given_and_asked(client, host)
    host.staff = host.STAFF["manager"].__class__(id="s-manager", name="Marina", role="manager", locale="ru")
    page = client.get("/recovery/approvals").text
    assert "Цена визита" in page and "1\xa0500,00\xa0€" in page
    assert "Уже выдано за этот визит" in page


def test_the_approval_request_mail_carries_the_card(app, client, host, booking, runner, smtp_server):
    state = app.extensions["mail"]
    state.server, state.port, state.default_sender = "127.0.0.1", smtp_server.port, "desk@salon.test"
    app.config.update(RECOVERY_MANAGER_EMAILS=["boss@salon.test"], RECOVERY_BASE_URL="https://salon.example.com")
    _given_and_asked(client, host)
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    (message,) = smtp_server.messages
    for part in (message.get_body(("plain",)), message.get_body(("html",))):
        text = part.get_content()
        assert "Anna Smirnova" in text and "Result not as agreed" in text, text
        assert "Colour came out orange, not copper" in text
        assert "Visit price:" in text and "€1,500.00" in text
        assert "Discount on the next visit, €200.00 (Granted)" in text
        assert "Free redo or another master, €1,500.00 (Granted)" in text

"""The compensation part of the widget, the approvals queue and the month spend page."""

import re

import pytest

from flask_recovery.models import Compensation

PAGE = "/recovery/bookings/b1"


def incident(client, host, **fields):
    host.login("admin")
    body = {"category": "result", "severity": "major", "description": "Colour came out orange", **fields}
    return client.post("/recovery/api/bookings/b1/incidents", json=body).get_json()["id"]


def csrf_token(html):
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_widget_offers_suggestions_and_shows_authority(client, host, booking):
    incident_id = incident(client, host)
    html = client.get(PAGE).text
    assert "Offer a remedy" in html
    assert "Suggested:" in html and "Free redo or another master" in html
    assert "€1,500.00" in html  # the redo is worth the visit
    assert "You may grant up to €1,500.00 per remedy alone." in html
    assert "Left this month: €5,000.00." in html
    assert "(150% of the visit)" in html
    assert f'action="/recovery/incidents/{incident_id}/compensations"' in html
    assert "Refund — needs approval" in html


def test_first_minor_slip_suggests_an_apology(client, host, booking):
    incident(client, host, category="late", severity="minor")
    assert "a fast, sincere apology is the remedy" in client.get(PAGE).text


def test_conduct_case_offers_no_compensation(client, host, booking):
    incident(client, host, category="client_conduct", description="Shouted")
    html = client.get(PAGE).text
    assert "No compensation is offered for abuse of staff." in html
    assert "Offer a remedy" not in html


def test_grant_through_the_form_shows_the_voucher(client, host, booking, session):
    incident_id = incident(client, host)
    response = client.post(
        f"/recovery/incidents/{incident_id}/compensations",
        data={"kind": "discount", "amount": "1 000,50", "next": PAGE, "idempotency_key": "k1"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{PAGE}#incident-{incident_id}"
    compensation = session.query(Compensation).one()
    assert compensation.amount == 100050 and compensation.status == "granted"
    html = client.get(PAGE).text
    assert "Compensation granted." in html and compensation.voucher_code in html
    # a double click (same idempotency key) spends once
    client.post(
        f"/recovery/incidents/{incident_id}/compensations",
        data={"kind": "discount", "amount": "1 000,50", "idempotency_key": "k1"},
    )
    assert session.query(Compensation).count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "gift", "amount": "abc"}, "enter a number such as 1500"),
        ({"kind": "gift", "amount": "-5"}, "Enter an amount greater than zero."),
        ({"kind": "gift", "amount": "1.005"}, "enter a number such as 1500"),
        ({"kind": "percent_discount", "percent": "150"}, "Enter a percent between 1 and 100."),
        ({"kind": "percent_discount", "percent": "ten"}, "percent must be a whole number"),
        ({"kind": "refund", "amount": "999999"}, "A refund cannot be more than the visit"),
        ({"kind": "lollipop", "amount": "1"}, "Choose a remedy from the list."),
    ],
)
def test_form_errors_are_shown_next_to_the_field(client, host, booking, session, data, message):
    """Without ``next`` (a script): the booking page itself, 422, the error beside its field."""
    incident_id = incident(client, host)
    response = client.post(f"/recovery/incidents/{incident_id}/compensations", data=data)
    assert response.status_code == 422
    assert message in response.text
    described = re.search(
        r'aria-describedby="(?:[\w-]+ )?(recovery-c\d+-\w+-error)" aria-invalid="true"', response.text
    )
    assert described and f'id="{described.group(1)}"' in response.text
    assert session.query(Compensation).count() == 0


def test_request_then_manager_approves_from_the_queue(client, host, booking, session):
    incident_id = incident(client, host)
    response = client.post(
        f"/recovery/incidents/{incident_id}/compensations",
        data={"kind": "refund", "amount": "900", "note": "Paid twice"},
    )
    assert response.status_code == 303
    assert "Above your authority: the request went to a manager." in client.get(PAGE).text
    assert client.get("/recovery/approvals").status_code == 403
    host.login("manager")
    queue = client.get("/recovery/approvals")
    assert queue.status_code == 200 and "Paid twice" in queue.text and "Irina" in queue.text
    request_id = session.query(Compensation).one().id
    approved = client.post(f"/recovery/compensations/{request_id}/approve", data={"note": "OK"})
    assert approved.status_code == 303 and approved.headers["Location"] == "/recovery/approvals"
    assert "Request approved." in client.get("/recovery/approvals").text
    assert "No requests are waiting" in client.get("/recovery/approvals").text
    host.login("admin")
    html = client.get(PAGE).text
    assert "Granted" in html and "Decided by Marina: OK" in html


def test_own_request_cannot_be_decided_in_the_queue(client, host, booking, session):
    incident_id = incident(client, host)
    host.login("manager")
    host.staff = host.staff.__class__(id="s-manager", name="Marina", role="manager")
    client.post(f"/recovery/incidents/{incident_id}/compensations", data={"kind": "gift", "amount": "1", "note": "x"})
    host.login("admin")
    client.post(f"/recovery/incidents/{incident_id}/compensations", data={"kind": "refund", "amount": "5", "note": "y"})
    host.login("manager")
    request_id = session.query(Compensation).filter_by(status="pending_approval").one().id
    host.staff = host.staff.__class__(id="s-admin", name="Irina", role="manager")
    queue = client.get("/recovery/approvals").text
    assert "This is your own request" in queue
    assert client.post(f"/recovery/compensations/{request_id}/approve", data={}).status_code == 403


@pytest.mark.config(WTF_CSRF_ENABLED=True)
def test_compensation_forms_need_csrf(client, host, booking, session):
    incident_id = incident(client, host)
    assert (
        client.post(
            f"/recovery/incidents/{incident_id}/compensations", data={"kind": "gift", "amount": "10"}
        ).status_code
        == 400
    )
    token = csrf_token(client.get(PAGE).text)
    client.post(
        f"/recovery/incidents/{incident_id}/compensations",
        data={"kind": "refund", "amount": "10", "note": "r", "csrf_token": token},
    )
    request_id = session.query(Compensation).one().id
    host.login("manager")
    assert client.post(f"/recovery/compensations/{request_id}/approve", data={}).status_code == 400
    session.expire_all()
    assert session.query(Compensation).one().status == "pending_approval"
    token = csrf_token(client.get("/recovery/approvals").text)
    assert client.post(f"/recovery/compensations/{request_id}/reject", data={"csrf_token": token}).status_code == 303
    session.expire_all()
    assert session.query(Compensation).one().status == "rejected"


def test_budget_page(client, host, booking):
    host.login("admin")
    assert client.get("/recovery/budget").status_code == 403
    host.login("manager")
    page = client.get("/recovery/budget?month=2026-01")
    assert page.status_code == 200 and "Nothing granted this month." in page.text
    assert 'href="/recovery/budget?month=2025-12"' in page.text and 'href="/recovery/budget?month=2026-02"' in page.text
    assert client.get("/recovery/budget?month=nope").status_code == 422

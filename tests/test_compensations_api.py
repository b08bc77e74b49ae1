"""Resolve: compensations within authority, requests above it, decisions, vouchers, budgets."""

from datetime import UTC, datetime, timedelta

import pytest

from flask_recovery import NotFound, domain
from flask_recovery.domain import VoucherError
from flask_recovery.models import AuditEntry, BudgetUsage, Compensation, Notification

API = "/recovery/api"


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
    return response.get_json()["error"]


def test_grant_within_authority(client, host, booking, session, signal_log):
    incident_id = new_incident(client, host)
    host.login("admin")
    response = grant(client, incident_id, kind="discount", amount=100000)
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "granted" and body["amount"] == 100000 and body["currency"] == "EUR"
    assert body["voucher_code"] and len(body["voucher_code"]) == 9
    assert body["warnings"] == []
    assert session.get(BudgetUsage, ("s-admin", domain.month_of(datetime.now(UTC)))).spent == 100000
    record = client.get(f"{API}/bookings/b1").get_json()
    assert record["compensations"][0]["id"] == body["id"]
    assert "compensation.granted" in [h["action"] for h in record["history"]]
    assert [n for n, _ in signal_log][-1] == "compensation_granted"


@pytest.mark.parametrize(
    ("body", "amount", "percent"),
    [
        ({"kind": "redo"}, 150000, None),
        ({"kind": "percent_discount", "percent": 15}, 22500, 15),
        ({"kind": "percent_discount", "percent": 33}, 49500, 33),
        ({"kind": "gift", "amount": 5000}, 5000, None),
    ],
)
def test_remedy_valuation(client, host, booking, body, amount, percent):
    incident_id = new_incident(client, host)
    host.login("admin")
    response = grant(client, incident_id, **body)
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["amount"], response.get_json()["percent"]) == (amount, percent)


BAD = [
    ({"kind": "gift", "amount": -100}, "amount"),
    ({"kind": "gift", "amount": 0}, "amount"),
    ({"kind": "gift", "amount": "100"}, "amount"),
    ({"kind": "gift", "amount": 10.5}, "amount"),
    ({"kind": "gift", "amount": True}, "amount"),
    ({"kind": "gift", "amount": 10**15}, "amount"),
    ({"kind": "gift"}, "amount"),
    ({"kind": "refund", "amount": 150001}, "amount"),
    ({"kind": "percent_discount", "percent": 101}, "percent"),
    ({"kind": "percent_discount", "percent": 0}, "percent"),
    ({"kind": "percent_discount", "percent": -5}, "percent"),
    ({"kind": "percent_discount"}, "percent"),
    ({"kind": "percent_discount", "percent": 10, "amount": 100}, "amount"),
    ({"kind": "redo", "amount": 100}, "amount"),
    ({"kind": "gift", "amount": 100, "percent": 5}, "percent"),
    ({"kind": "cash", "amount": 100}, "kind"),
    ({"kind": None}, "kind"),
    ({"kind": "gift", "amount": 100, "note": "x\x00"}, "note"),
    ({"kind": "gift", "amount": 100, "idempotency_key": "k" * 65}, "idempotency_key"),
    ({"kind": "gift", "amount": 100, "tip": 1}, "tip"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f"{f}:{b}" for b, f in BAD])
def test_bad_input_is_refused_and_changes_nothing(client, host, booking, session, body, field):
    incident_id = new_incident(client, host)
    host.login("admin")
    before = session.query(AuditEntry).count()
    response = grant(client, incident_id, **body)
    assert response.status_code == 422, response.get_json()
    assert error_of(response)["field"] == field
    assert session.query(Compensation).count() == 0
    assert session.query(BudgetUsage).count() == 0
    assert session.query(AuditEntry).count() == before


def test_state_conflicts(client, host, booking, session):
    conduct_id = new_incident(client, host, category="client_conduct", description="Shouted at Olga")
    host.login("manager")
    refused = grant(client, conduct_id, kind="gift", amount=100)
    assert refused.status_code == 409 and error_of(refused)["code"] == "conduct_case"
    assert grant(client, 9999, kind="gift", amount=100).status_code == 404
    assert grant(client, "abc", kind="gift", amount=100).status_code == 404
    incident_id = new_incident(client, host)
    with client.application.app_context():
        domain.resolve_incident(session, incident_id, host.STAFF["admin"])
        domain.close_incident(session, incident_id, host.STAFF["admin"])
    closed = grant(client, incident_id, kind="gift", amount=100)
    assert closed.status_code == 409
    assert session.query(Compensation).count() == 0
    refusals = session.query(AuditEntry).filter_by(action="compensation.refused").all()
    assert sorted(r.data["reason"] for r in refusals) == ["conduct_case", "incident_closed"]


def test_above_authority_becomes_a_request_a_manager_approves(client, host, booking, session, signal_log):
    incident_id = new_incident(client, host)
    host.login("admin")
    requested = grant(client, incident_id, kind="refund", amount=100000, note="Client paid twice")
    assert requested.status_code == 201 and requested.get_json()["status"] == "pending_approval"
    request_id = requested.get_json()["id"]
    assert session.query(Notification).filter_by(kind="approval_requested").count() == 1
    assert session.query(BudgetUsage).count() == 0

    assert client.post(f"{API}/compensations/{request_id}/approve", json={}).status_code == 403
    host.login("manager")
    pending = client.get(f"{API}/compensations/pending").get_json()["requests"]
    assert [p["id"] for p in pending] == [request_id]
    approved = client.post(f"{API}/compensations/{request_id}/approve", json={"note": "Yes, refund"})
    assert approved.status_code == 200
    body = approved.get_json()
    assert body["status"] == "granted" and body["decided_by"] == "s-manager" and body["decision_note"] == "Yes, refund"
    assert session.query(BudgetUsage).one().staff_id == "s-manager"
    twice = client.post(f"{API}/compensations/{request_id}/approve", json={})
    assert twice.status_code == 409
    assert client.post(f"{API}/compensations/{request_id}/reject", json={}).status_code == 409
    host.login("admin")
    seen = client.get(f"{API}/bookings/b1").get_json()["compensations"][0]
    assert seen["status"] == "granted" and seen["decision_note"] == "Yes, refund"
    names = [n for n, _ in signal_log]
    assert names.count("compensation_requested") == 1 and names.count("compensation_decided") == 1


def test_reject_and_nobody_decides_their_own(client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("manager")
    own = grant(client, incident_id, kind="gift", amount=100, note="x")
    assert own.get_json()["status"] == "granted"
    host.login("admin")
    request_id = grant(client, incident_id, kind="refund", amount=1000, note="refund").get_json()["id"]
    host.staff = host.STAFF["manager"].__class__(id="s-admin", name="Irina", role="manager")
    refused = client.post(f"{API}/compensations/{request_id}/approve", json={})
    assert (
        refused.status_code == 403 and error_of(refused)["message"] == "Nobody approves or rejects their own request."
    )
    host.login("manager")
    rejected = client.post(f"{API}/compensations/{request_id}/reject", json={"note": "Offer a redo instead"})
    assert rejected.get_json()["status"] == "rejected"
    assert client.post(f"{API}/compensations/{request_id}/approve", json={}).status_code == 409
    assert client.post(f"{API}/compensations/99999/approve", json={}).status_code == 404
    reasons = [e.data["reason"] for e in session.query(AuditEntry).filter_by(action="compensation.decision_refused")]
    assert reasons == ["own_request"]


@pytest.mark.config(
    RECOVERY_AUTHORITY={
        "admin": {"per_grant": 100000, "per_month": 250000, "kinds": "all"},
        "manager": {"per_grant": 100000, "per_month": None, "kinds": "all"},
    }
)
def test_monthly_budget_and_approver_authority(client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("admin")
    for _ in range(2):
        assert grant(client, incident_id, kind="gift", amount=100000).get_json()["status"] == "granted"
    exhausted = grant(client, incident_id, kind="gift", amount=60000)  # no note: still a request
    assert exhausted.status_code == 201 and exhausted.get_json()["status"] == "pending_approval"
    requested = session.query(AuditEntry).filter_by(action="compensation.requested").one()
    assert requested.data["reason"] == "monthly_budget_exhausted"
    assert grant(client, incident_id, kind="gift", amount=50000).get_json()["status"] == "granted"
    pending = grant(client, incident_id, kind="gift", amount=60000, note="loyal client")
    assert pending.get_json()["status"] == "pending_approval"
    big = grant(client, incident_id, kind="gift", amount=120000, note="big").get_json()["id"]
    assert session.get(BudgetUsage, ("s-admin", domain.month_of(datetime.now(UTC)))).spent == 250000
    host.login("manager")
    beyond = client.post(f"{API}/compensations/{big}/approve", json={})
    assert (
        beyond.status_code == 403
        and error_of(beyond)["message"] == "This is above what your role may approve or reject."
    )
    assert client.post(f"{API}/compensations/{pending.get_json()['id']}/approve", json={}).status_code == 200


@pytest.mark.config(RECOVERY_PERMISSIONS={"compensation.request": "*"})
def test_roles_absent_from_authority_grant_nothing_alone(client, host, booking):
    incident_id = new_incident(client, host)
    host.login("receptionist")
    assert grant(client, incident_id, kind="gift", amount=100).get_json()["status"] == "pending_approval"
    assert grant(client, incident_id, kind="gift", amount=100, note="asks").get_json()["status"] == "pending_approval"
    host.login("admin")
    assert grant(client, incident_id, kind="refund", amount=100, note="r").get_json()["status"] == "pending_approval"


def test_idempotency_key_spends_once(client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("admin")
    first = grant(client, incident_id, kind="gift", amount=5000, idempotency_key="click-1")
    again = grant(client, incident_id, kind="gift", amount=5000, idempotency_key="click-1")
    header = client.post(
        f"{API}/incidents/{incident_id}/compensations",
        json={"kind": "gift", "amount": 5000},
        headers={"Idempotency-Key": "click-1"},
    )
    assert (first.status_code, again.status_code, header.status_code) == (201, 200, 200)
    assert first.get_json()["id"] == again.get_json()["id"] == header.get_json()["id"]
    assert session.query(Compensation).count() == 1
    assert session.query(BudgetUsage).one().spent == 5000


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Moscow")
def test_months_are_counted_in_the_business_time_zone(app, host, booking, session):
    staff = host.login("admin")
    with app.app_context():
        incident = domain.record_incident(
            session, booking, staff, category="late", severity="major", description="late"
        )
        late_evening = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 01:30 on 1 December in Moscow
        compensation, _ = domain.grant_compensation(
            session, incident.id, app.recovery.load_booking, staff, kind="gift", amount=100, now=late_evening
        )
        assert compensation.charged_month == "2026-12"


def test_vouchers_redeem_once(app, client, host, booking, session):
    incident_id = new_incident(client, host)
    host.login("admin")
    code = grant(client, incident_id, kind="percent_discount", percent=20).get_json()["voucher_code"]
    gift = grant(client, incident_id, kind="gift", amount=100).get_json()
    assert gift["voucher_code"] is None
    host.add_booking(
        "next",
        starts_at=datetime.now(UTC) + timedelta(days=7),
        ends_at=datetime.now(UTC) + timedelta(days=7, hours=1),
        status="booked",
    )
    host.add_booking("stranger", client_id="c2")
    with app.app_context():
        with pytest.raises(VoucherError, match="another client"):
            app.recovery.redeem_voucher(code, "stranger")
        used = app.recovery.redeem_voucher(code.lower().replace("-", " "), "next")
        assert used.kind == "percent_discount" and used.percent == 20 and used.redeemed_booking_id == "next"
        with pytest.raises(VoucherError, match="already been used"):
            app.recovery.redeem_voucher(code, "next")
        with pytest.raises(NotFound):
            app.recovery.redeem_voucher("ZZZZ-ZZZZ", "next")
        second = domain.grant_compensation(
            session,
            incident_id,
            app.recovery.load_booking,
            host.STAFF["admin"],
            kind="discount",
            amount=1000,
            now=datetime.now(UTC) - timedelta(days=400),
        )[0]
        with pytest.raises(VoucherError, match="expired"):
            app.recovery.redeem_voucher(second.voucher_code, "next")
    assert session.query(AuditEntry).filter_by(action="voucher.redeemed").count() == 1


@pytest.mark.config(RECOVERY_MONTHLY_BUDGET=300000)
def test_month_spend_against_the_plan(client, host, booking):
    incident_id = new_incident(client, host)
    host.login("admin")
    grant(client, incident_id, kind="gift", amount=100000)
    grant(client, incident_id, kind="discount", amount=50000)
    grant(client, incident_id, kind="refund", amount=20000, note="r")
    host.login("admin")
    assert client.get(f"{API}/budget").status_code == 403
    host.login("manager")
    report = client.get(f"{API}/budget").get_json()
    assert report["total"] == 150000 and report["budget"] == 300000 and report["left"] == 150000
    assert report["staff"] == [{"staff_id": "s-admin", "name": "Irina", "grants": 2, "spent": 150000}]
    assert report["pending_requests"] == 1
    assert client.get(f"{API}/budget?month=2026-13").status_code == 422
    assert client.get(f"{API}/budget?month=1999-01").get_json()["total"] == 0
    page = client.get("/recovery/budget")
    assert page.status_code == 200 and "Irina" in page.text and "<progress" in page.text


def test_a_request_above_authority_needs_no_note(client, host, booking, session):
    """The contract: ``note`` stays optional; the incident tells the manager what happened."""
    incident_id = new_incident(client, host)
    host.login("admin")
    response = grant(client, incident_id, kind="refund", amount=100000)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "pending_approval" and body["note"] is None
    assert session.query(Notification).filter_by(kind="approval_requested").count() == 1
    assert session.query(BudgetUsage).count() == 0


def test_idempotency_key_is_bound_to_the_request_and_the_incident(client, host, booking, session):
    incident_id = new_incident(client, host)
    other_incident = new_incident(client, host, category="late", description="Started 20 minutes late")
    host.login("admin")
    body = {"kind": "discount", "amount": 5000, "note": "Sorry", "idempotency_key": "click-9"}
    first = grant(client, incident_id, **body)
    assert first.status_code == 201
    same = grant(client, incident_id, **body)
    assert same.status_code == 200 and same.get_json()["id"] == first.get_json()["id"]
    assert same.get_json()["voucher_code"] == first.get_json()["voucher_code"]
    assert grant(client, incident_id, **{**body, "note": "  Sorry  "}).status_code == 200  # the note as stored

    for changed in (
        {"amount": 6000},
        {"kind": "gift"},
        {"note": "Another reason"},
        {"note": None},
        {"kind": "percent_discount", "amount": None, "percent": 10},
    ):
        reused = grant(client, incident_id, **{**body, **changed})
        assert reused.status_code == 409, (changed, reused.get_json())
        assert error_of(reused)["code"] == "idempotency_key_reused" and error_of(reused)["field"] == "idempotency_key"
    elsewhere = grant(client, other_incident, **body)
    assert elsewhere.status_code == 409 and error_of(elsewhere)["code"] == "idempotency_key_reused"

    assert session.query(Compensation).count() == 1
    assert session.query(BudgetUsage).one().spent == 5000
    refusals = session.query(AuditEntry).filter_by(action="compensation.refused").all()
    assert [r.data["reason"] for r in refusals] == ["idempotency_key_reused"] * 6


@pytest.mark.parametrize(
    ("body", "value"),
    [({"kind": "redo"}, 150000), ({"kind": "percent_discount", "percent": 20}, 30000)],
    ids=["redo", "percent_discount"],
)
def test_idempotency_key_repeats_remedies_valued_from_the_price(client, host, booking, session, body, value):
    """Their amount is the booking's price (or a share of it), never sent: a repeat sends none."""
    incident_id = new_incident(client, host)
    host.login("admin")
    first = grant(client, incident_id, **body, idempotency_key="k-price")
    again = grant(client, incident_id, **body, idempotency_key="k-price")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["amount"] == value
    with_amount = grant(client, incident_id, **body, amount=value, idempotency_key="k-price")
    assert with_amount.status_code == 409 and error_of(with_amount)["code"] == "idempotency_key_reused"
    assert session.query(Compensation).count() == 1

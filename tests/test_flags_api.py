"""The JSON API for flags, the client's history and booking holds, checked against the
OpenAPI document, with every refusal (401, 403, 404, 409, 415, 422)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from flask_recovery.models import AuditEntry, Flag

API = "/recovery/api"


@pytest.fixture
def document(client):
    return client.get(f"{API}/openapi.json").get_json()


def schema_of(document, path, method="get", status="200"):
    operation = document["paths"][path][method]
    return operation["responses"][status]["content"]["application/json"]["schema"]


def check(document, response, schema):
    jsonschema.validate(response.get_json(), {"components": document["components"], **schema})


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


@pytest.fixture
def flagged(client, host, booking):
    """Anna (c1) with a late start recorded on b1 and a booking b2 next week."""
    now = datetime.now(UTC).replace(microsecond=0)
    host.add_booking("b2", starts_at=now + timedelta(days=7), ends_at=now + timedelta(days=7, hours=1), status="booked")
    host.login("admin")
    response = client.post(
        f"{API}/bookings/b1/incidents",
        json={"category": "late", "severity": "major", "description": "Master started 25 minutes late"},
    )
    assert response.status_code == 201
    return response.get_json()["id"]


def test_client_flags_and_the_booking_record(client, host, document, flagged):
    response = client.get(f"{API}/clients/c1/flags")
    assert response.status_code == 200
    check(document, response, schema_of(document, "/clients/{client_id}/flags"))
    body = response.get_json()
    assert body["display"] == "vip" and body["may_book"]["allowed"] is True
    (flag,) = body["flags"]
    assert flag["type"] == "vip" and flag["state"] == "active" and flag["incident_id"] == flagged
    assert flag["reason"].startswith("Last visit: Late start (major): Master started 25 minutes late.")
    record = client.get(f"{API}/bookings/b2")
    check(document, record, schema_of(document, "/bookings/{booking_id}"))
    assert [(f["id"], f["applies"]) for f in record.get_json()["flags"]] == [(flag["id"], True)]
    assert [f["applies"] for f in client.get(f"{API}/bookings/b1").get_json()["flags"]] == [False]


def test_acknowledge_lift_and_set_by_hand(client, host, session, document, flagged):
    flag_id = client.get(f"{API}/clients/c1/flags").get_json()["flags"][0]["id"]
    host.login("master")
    seen = client.post(
        f"{API}/flags/{flag_id}/acknowledge", json={"note": "Seen, compliment offered", "booking_id": "b2"}
    )
    assert seen.status_code == 200
    check(document, seen, document["components"]["schemas"]["Flag"])
    assert seen.get_json()["acknowledged_by"] == "s-master"
    assert seen.get_json()["acknowledgement"] == "Seen, compliment offered"
    again = client.post(f"{API}/flags/{flag_id}/acknowledge", json={})
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"

    assert client.post(f"{API}/flags/{flag_id}/lift", json={"reason": "x"}).status_code == 403
    host.login("manager")
    missing = client.post(f"{API}/flags/{flag_id}/lift", json={})
    assert missing.status_code == 422 and error_of(missing)["field"] == "reason"
    lifted = client.post(f"{API}/flags/{flag_id}/lift", json={"reason": "Not needed"})
    assert lifted.status_code == 200 and lifted.get_json()["state"] == "lifted"
    assert client.post(f"{API}/flags/{flag_id}/lift", json={"reason": "again"}).status_code == 409
    assert client.get(f"{API}/clients/c1/flags").get_json() | {"may_book": None} == {
        "client_id": "c1",
        "display": None,
        "flags": [],
        "may_book": None,
    }

    created = client.post(
        f"{API}/clients/c1/flags", json={"type": "conduct", "reason": "Threatened Olga", "booking_id": "b1", "days": 30}
    )
    assert created.status_code == 201
    check(document, created, schema_of(document, "/clients/{client_id}/flags", "post", "201"))
    assert created.get_json()["source"] == "manual" and created.get_json()["booking_id"] == "b1"
    assert client.get(f"{API}/clients/c1/flags").get_json()["display"] == "conduct"
    actions = [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-3:] == ["flag.acknowledged", "flag.lifted", "flag.set"]


def test_conduct_notes_are_restricted_in_the_api(client, host, flagged):
    host.login("manager")
    client.post(f"{API}/clients/c1/flags", json={"type": "conduct", "reason": "Threatened Olga"})
    host.login("master")
    flags = client.get(f"{API}/clients/c1/flags").get_json()["flags"]
    conduct = next(f for f in flags if f["type"] == "conduct")
    assert conduct["restricted"] is True and "Threatened" not in conduct["reason"]
    vip = next(f for f in flags if f["type"] == "vip")
    assert vip["restricted"] is False


def test_holds(client, host, document, flagged):
    host.login("manager")
    set_ = client.post(f"{API}/clients/c1/hold", json={"reason": "Threats; by phone only", "incident_id": flagged})
    assert set_.status_code == 201
    check(document, set_, schema_of(document, "/clients/{client_id}/hold", "post", "201"))
    answer = client.get(f"{API}/clients/c1/hold")
    check(document, answer, schema_of(document, "/clients/{client_id}/hold"))
    assert answer.get_json()["allowed"] is False and answer.get_json()["reason"] == "Threats; by phone only"
    host.login("master")  # may see that she books by phone, not the manager's note
    assert client.get(f"{API}/clients/c1/hold").get_json() | {"set_at": None} == {
        "allowed": False,
        "reason": None,
        "hold_id": set_.get_json()["id"],
        "set_at": None,
    }
    assert client.post(f"{API}/clients/c1/hold/lift", json={"reason": "x"}).status_code == 403
    host.login("manager")
    assert client.post(f"{API}/clients/c1/hold", json={"reason": "again"}).status_code == 409
    lifted = client.post(f"{API}/clients/c1/hold/lift", json={"reason": "Apologised"})
    assert lifted.status_code == 200
    check(document, lifted, schema_of(document, "/clients/{client_id}/hold/lift", "post"))
    assert lifted.get_json()["active"] is False
    assert client.post(f"{API}/clients/c1/hold/lift", json={"reason": "again"}).status_code == 409


def test_the_client_history_in_json(client, host, session, document, flagged):
    client.post(f"{API}/incidents/{flagged}/compensations", json={"kind": "gift", "amount": 1000})
    host.login("admin")
    response = client.get(f"{API}/clients/c1")
    assert response.status_code == 200
    check(document, response, schema_of(document, "/clients/{client_id}"))
    body = response.get_json()
    assert [v["booking_id"] for v in body["visits"]] == ["b1"]
    assert body["visits"][0]["incidents"][0]["compensations"][0]["kind"] == "gift"
    assert body["active_flags"][0]["reason"].count("a compliment worth €10.00") == 1


def test_refusals(client, host, document, flagged):
    flag_id = client.get(f"{API}/clients/c1/flags").get_json()["flags"][0]["id"]
    error = document["components"]["schemas"]["Error"]
    host.login(None)
    for method, url in [
        ("get", f"{API}/clients/c1"),
        ("get", f"{API}/clients/c1/flags"),
        ("post", f"{API}/clients/c1/flags"),
        ("post", f"{API}/flags/{flag_id}/acknowledge"),
        ("post", f"{API}/flags/{flag_id}/lift"),
        ("get", f"{API}/clients/c1/hold"),
        ("post", f"{API}/clients/c1/hold"),
        ("post", f"{API}/clients/c1/hold/lift"),
    ]:
        response = getattr(client, method)(url, json={})
        assert response.status_code == 401, url
        check(document, response, error)
    host.login("admin")
    for method, url, body in [
        ("post", f"{API}/clients/c1/flags", {"type": "vip", "reason": "x"}),
        ("post", f"{API}/clients/c1/hold", {"reason": "x"}),
    ]:
        assert getattr(client, method)(url, json=body).status_code == 403, url
    host.login("manager")
    for url in (f"{API}/clients/nobody", f"{API}/clients/nobody/flags", f"{API}/clients/{'x' * 65}/hold"):
        assert client.get(url).status_code == 404, url
    for url, body in [
        (f"{API}/flags/999/acknowledge", {"note": "x"}),
        (f"{API}/flags/x/lift", {"reason": "x"}),
        (f"{API}/flags/-1/lift", {"reason": "x"}),
    ]:
        response = client.post(url, json=body)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", url
    for body, field in [
        ({"type": "gold", "reason": "x"}, "type"),
        ({"type": "vip"}, "reason"),
        ({"type": "vip", "reason": 5}, "reason"),
        ({"type": "vip", "reason": "x", "days": 400}, "days"),
        ({"type": "vip", "reason": "x", "booking_id": "nope"}, "booking_id"),
        ({"type": "vip", "reason": "x", "booking_id": 7}, "booking_id"),
        ({"type": "vip", "reason": "x", "colour": "red"}, "colour"),
    ]:
        response = client.post(f"{API}/clients/c1/flags", json=body)
        assert response.status_code == 422, body
        assert error_of(response)["field"] == field
        check(document, response, error)
    host.add_booking("x1", client_id="c2")
    response = client.post(f"{API}/flags/{flag_id}/acknowledge", json={"booking_id": "x1"})
    assert response.status_code == 422 and error_of(response)["field"] == "booking_id"
    response = client.post(f"{API}/clients/c1/hold", json={"reason": "x", "incident_id": "1"})
    assert response.status_code == 422 and error_of(response)["field"] == "incident_id"
    response = client.post(f"{API}/clients/c1/flags", data="type=vip", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = client.post(f"{API}/clients/c1/flags", data="[1]", content_type="application/json")
    assert response.status_code == 422 and error_of(response)["field"] == "body"
    assert client.delete(f"{API}/clients/c1/flags").status_code == 405


def test_branch_staff(client, host, flagged):
    host.login("north_admin")
    assert client.get(f"{API}/clients/c1/flags").status_code == 404
    now = datetime.now(UTC).replace(microsecond=0)
    host.add_booking(
        "n1", location="north", starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=1, hours=1)
    )
    body = client.get(f"{API}/clients/c1/flags?booking=n1").get_json()
    assert body["display"] == "vip"  # the flag follows her to the north desk
    assert client.get(f"{API}/clients/c1?booking=n1").get_json()["visits"] == []


def test_flags_are_kept_by_reference(client, host, session, flagged):
    flag = session.query(Flag).one()
    assert flag.client_id == "c1" and "Anna" not in (flag.reason or "")


def test_a_hold_reason_is_shown_by_one_rule_everywhere(app, client, host, booking):
    """A master (neither conduct.view nor hold.manage) never reads the manager's hold reason:
    not on /hold, not in the client record (may_book, holds[], lift_reason), not on the pages."""
    host.login("admin")
    client.post(
        "/recovery/api/bookings/b1/incidents", json={"category": "late", "severity": "minor", "description": "x"}
    )
    host.login("manager")
    assert (
        client.post("/recovery/api/clients/c1/hold", json={"reason": "HOLD-REASON-7 threatened Olga"}).status_code
        == 201
    )
    assert "HOLD-REASON-7" in client.get("/recovery/api/clients/c1").text  # the manager reads it
    host.login("master")
    for url in (
        "/recovery/api/clients/c1/hold",
        "/recovery/api/clients/c1",
        "/recovery/clients/c1",
        "/recovery/bookings/b1",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "HOLD-REASON-7" not in response.text, url
    record = client.get("/recovery/api/clients/c1").get_json()
    assert record["may_book"]["allowed"] is False and record["may_book"]["reason"] is None
    assert [h["reason"] for h in record["holds"]] == [None]
    host.login("manager")
    assert (
        client.post("/recovery/api/clients/c1/hold/lift", json={"reason": "LIFT-REASON-8 called us"}).status_code == 200
    )
    host.login("master")
    assert "LIFT-REASON-8" not in client.get("/recovery/api/clients/c1").text

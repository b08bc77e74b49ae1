"""The API tells the truth about itself: OPTIONS names the methods a URL has, a documented
optional body may be left out, control characters in ids and keys are a 422 naming the field,
and the document says a new incident needs a category (unless ``conduct: true``)."""

from __future__ import annotations

import pytest

API = "/recovery/api"


@pytest.fixture
def case(app, client, host, booking):
    host.login("admin")
    response = client.post(
        f"{API}/bookings/{booking.id}/incidents",
        json={"category": "late", "severity": "minor", "description": "25 minutes late"},
    )
    assert response.status_code == 201
    return response.get_json()["id"]


def test_options_names_only_the_methods_each_documented_path_has(app, client, case):
    document = client.get(f"{API}/openapi.json").get_json()
    checked = 0
    for path, operations in document["paths"].items():
        assert not path.startswith("/recovery"), path  # paths are relative to the server URL
        url = API + path.format(booking_id="b1", client_id="c1", incident_id=case, compensation_id=1, flag_id=1)
        response = client.options(url)
        assert response.status_code == 204, (url, response.status_code)
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        documented = {method.upper() for method in operations if method in ("get", "post", "put", "patch", "delete")}
        assert allowed - {"HEAD", "OPTIONS"} == documented, (url, allowed, documented)
        assert not allowed & {"PUT", "PATCH", "DELETE"}, url
        checked += 1
    assert checked >= 10
    unknown = client.options(f"{API}/no/such/thing")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"


def test_a_documented_optional_body_may_be_left_out(app, client, case):
    """resolve and reopen document their body as optional: no body, no Content-Type, still 200."""
    resolved = client.post(f"{API}/incidents/{case}/resolve")
    assert resolved.status_code == 200 and resolved.get_json()["status"] == "resolved"
    reopened = client.post(f"{API}/incidents/{case}/reopen")
    assert reopened.status_code == 200 and reopened.get_json()["status"] == "reopened"
    # a body that is there must still be JSON
    form = client.post(f"{API}/incidents/{case}/resolve", data={"note": "x"})
    assert form.status_code == 415


@pytest.mark.parametrize("bad", ["c\x001", "c\x1b[31m", "c\x7f"])
def test_control_characters_in_a_path_id_are_a_422_naming_it(app, client, host, bad):
    host.login("manager")
    response = client.get(f"{API}/clients/{bad}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "client_id"
    booking = client.get(f"{API}/bookings/{bad}")
    assert booking.status_code == 422 and booking.get_json()["error"]["field"] == "booking_id"


def test_control_characters_in_an_idempotency_key_are_a_422(app, client, case):
    body = {"kind": "gift", "amount": 10000, "idempotency_key": "key\x00one"}
    response = client.post(f"{API}/incidents/{case}/compensations", json=body)
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "idempotency_key"
    header = client.post(
        f"{API}/incidents/{case}/compensations",
        json={"kind": "gift", "amount": 10000},
        headers={"Idempotency-Key": "key\x01two"},
    )
    assert header.status_code == 422 and header.get_json()["error"]["field"] == "idempotency_key"


def test_the_document_says_an_incident_needs_a_category_unless_it_is_conduct(app, client):
    from jsonschema import Draft202012Validator

    document = client.get(f"{API}/openapi.json").get_json()
    operation = document["paths"]["/bookings/{booking_id}/incidents"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    validator = Draft202012Validator(schema)
    assert not validator.is_valid({"severity": "minor", "description": "x"})
    assert validator.is_valid({"severity": "minor", "description": "x", "category": "late"})
    assert validator.is_valid({"severity": "major", "description": "x", "conduct": True})

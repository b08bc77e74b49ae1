"""The JSON API for incidents: recording, reading, resolving, reopening, and every refusal."""

from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from openapi_spec_validator import validate

from flask_recovery.models import AuditEntry, Incident

API = "/recovery/api"
LATE = {
    "category": "late",
    "severity": "major",
    "description": "Master started 25 minutes late",
    "corrective_action": "We now keep a 15-minute buffer between long services",
}


def record(client, booking_id="b1", **overrides):
    return client.post(f"{API}/bookings/{booking_id}/incidents", json={**LATE, **overrides})


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]


def test_record_incident_returns_201_and_it_is_listed(client, host, booking, session, signal_log):
    host.login("admin")
    response = record(client)
    assert response.status_code == 201
    incident = response.get_json()
    assert incident["status"] == "open"
    assert incident["category"] == "late" and incident["severity"] == "major"
    assert incident["recorded_by"] == "s-admin"
    assert incident["minutes_to_recognition"] == 60
    assert incident["visit_ended_at"].endswith("+00:00")

    listed = client.get(f"{API}/bookings/b1").get_json()
    assert [i["id"] for i in listed["incidents"]] == [incident["id"]]
    assert listed["incidents"][0]["description"] == LATE["description"]
    # the client is flagged for her next visit in the same transaction
    assert [h["action"] for h in listed["history"]] == ["flag.set", "incident.recorded"]
    assert {h["actor_id"] for h in listed["history"]} == {"s-admin"}
    assert [name for name, _ in signal_log] == ["incident_recorded", "client_flagged"]
    assert signal_log[0][1]["incident"].id == incident["id"]
    assert signal_log[1][1]["flag"].type == "vip" and signal_log[1][1]["flag"].incident_id == incident["id"]
    assert [f["type"] for f in listed["flags"]] == ["vip"] and listed["flags"][0]["applies"] is False


def test_stored_datetimes_are_utc_and_timezone_aware(client, host, session):
    moscow = timezone_plus(3)
    host.add_booking(
        "b1", starts_at=datetime(2026, 3, 1, 14, 0, tzinfo=moscow), ends_at=datetime(2026, 3, 1, 15, 30, tzinfo=moscow)
    )
    host.login("admin")
    assert record(client).status_code == 201
    session.expire_all()
    incident = session.query(Incident).one()
    assert incident.visit_ended_at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert incident.visit_ended_at.utcoffset() == timedelta(0)
    assert incident.recorded_at.tzinfo is not None


def timezone_plus(hours):
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_resolve_then_reopen_then_resolve(client, host, booking):
    host.login("admin")
    incident_id = record(client).get_json()["id"]
    resolved = client.post(f"{API}/incidents/{incident_id}/resolve", json={"note": "Redo booked for Friday"})
    assert resolved.status_code == 200
    body = resolved.get_json()
    assert body["status"] == "resolved" and body["resolved_by"] == "s-admin"
    assert body["resolution_note"] == "Redo booked for Friday"
    assert body["minutes_to_resolution"] >= 60

    again = client.post(f"{API}/incidents/{incident_id}/resolve", json={})
    assert again.status_code == 409
    assert error_of(again)["code"] == "invalid_transition"
    assert error_of(again)["message"] == "Someone has just changed this case: it is now Resolved."

    reopened = client.post(f"{API}/incidents/{incident_id}/reopen", json={})
    assert reopened.status_code == 200 and reopened.get_json()["status"] == "reopened"
    assert client.post(f"{API}/incidents/{incident_id}/reopen", json={}).status_code == 409
    assert client.post(f"{API}/incidents/{incident_id}/resolve", json={}).get_json()["status"] == "resolved"

    actions = [h["action"] for h in client.get(f"{API}/bookings/b1").get_json()["history"]]
    assert actions == ["incident.resolved", "incident.reopened", "incident.resolved", "flag.set", "incident.recorded"]


def test_conduct_incident(client, host, booking):
    host.login("admin")
    response = client.post(
        f"{API}/bookings/b1/incidents",
        json={"conduct": True, "severity": "critical", "description": "Shouted at the master"},
    )
    assert response.status_code == 201
    assert response.get_json()["category"] == "client_conduct" and response.get_json()["conduct"] is True
    by_category = record(client, category="client_conduct", severity="major")
    assert by_category.get_json()["conduct"] is True
    mixed = record(client, conduct=True)
    assert mixed.status_code == 422 and error_of(mixed)["field"] == "category"


def test_conduct_text_hidden_from_roles_not_allowed(client, host, booking):
    host.login("admin")
    record(client, category="client_conduct", description="Insulted Olga")
    host.login("master")
    incident = client.get(f"{API}/bookings/b1").get_json()["incidents"][0]
    assert incident["restricted"] is True and incident["description"] is None
    host.login("manager")
    assert client.get(f"{API}/bookings/b1").get_json()["incidents"][0]["description"] == "Insulted Olga"


# -- refusals ---------------------------------------------------------------------------


def test_no_staff_gets_401_everywhere(client, host, booking):
    host.login(None)
    for response in (
        record(client),
        client.get(f"{API}/bookings/b1"),
        client.post(f"{API}/incidents/1/resolve", json={}),
        client.post(f"{API}/incidents/1/reopen", json={}),
    ):
        assert response.status_code == 401
        assert error_of(response)["code"] == "not_authenticated"


def test_role_without_permission_gets_403(client, host, booking):
    host.login("master")
    incident_id = record(client).get_json()["id"]
    response = client.post(f"{API}/incidents/{incident_id}/resolve", json={})
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    host.login("manager")
    assert client.post(f"{API}/incidents/{incident_id}/resolve", json={}).status_code == 200


@pytest.mark.config(RECOVERY_PERMISSIONS={"incident.record": ["admin", "manager"]})
def test_record_permission_is_configurable(client, host, booking):
    host.login("receptionist")
    assert record(client).status_code == 403
    host.login("admin")
    assert record(client).status_code == 201


def test_unknown_booking_and_incident_get_404(client, host, booking):
    host.login("admin")
    assert error_of(record(client, booking_id="nope"))["code"] == "not_found"
    assert record(client, booking_id="nope").status_code == 404
    assert client.get(f"{API}/bookings/nope").status_code == 404
    assert client.get(f"{API}/bookings/{'x' * 500}").status_code == 404
    for bad in ("999", "abc", "-1", "99999999999999999999"):
        response = client.post(f"{API}/incidents/{bad}/resolve", json={})
        assert response.status_code == 404, bad
        assert error_of(response)["code"] == "not_found"
    assert client.get(f"{API}/no/such/endpoint").status_code == 404


def test_other_location_sees_nothing(client, host, booking):
    host.login("admin")
    incident_id = record(client).get_json()["id"]
    host.login("north_admin")
    assert record(client).status_code == 404
    assert client.get(f"{API}/bookings/b1").status_code == 404
    assert client.post(f"{API}/incidents/{incident_id}/resolve", json={}).status_code == 404


BAD_BODIES = [
    ({"category": "weather"}, "category", "invalid_choice"),
    ({"category": ""}, "category", "required"),
    ({"category": None}, "category", "required"),
    ({"category": ["late"]}, "category", "invalid_choice"),
    ({"severity": "apocalyptic"}, "severity", "invalid_choice"),
    ({"severity": None}, "severity", "required"),
    ({"description": ""}, "description", "required"),
    ({"description": "   "}, "description", "required"),
    ({"description": 42}, "description", "not_text"),
    ({"description": "a\x00b"}, "description", "control_characters"),
    ({"description": "x" * 4001}, "description", "too_long"),
    ({"description": "x" * 1_000_000}, "description", "too_long"),
    ({"corrective_action": {"a": 1}}, "corrective_action", "not_text"),
    ({"conduct": "yes"}, "conduct", "not_boolean"),
    ({"surprise": 1}, "surprise", "invalid"),
]


@pytest.mark.parametrize(("change", "field", "code"), BAD_BODIES, ids=[f for _, f, _ in BAD_BODIES])
def test_bad_input_gets_422_naming_the_field_and_changes_nothing(client, host, booking, session, change, field, code):
    host.login("admin")
    response = record(client, **change)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["field"], error["code"]) == (field, code)
    assert session.query(Incident).count() == 0
    assert session.query(AuditEntry).count() == 0


def test_a_refusal_says_what_to_do_not_which_identifier(client, host, booking):
    """The message is for a person (the field's name is in ``field`` for the program)."""
    host.login("admin")
    expected = [
        ({"category": None}, "Choose what went wrong."),
        ({"category": "weather"}, "Choose one of the situations in the list."),
        ({"severity": None}, "Choose how serious it was."),
        ({"description": ""}, "Describe what happened."),
        ({"description": "x" * 4001}, "This text is too long: 4001 characters, at most 4000."),
        ({"corrective_action": 7}, "Write this as text."),
    ]
    assert [error_of(record(client, **change))["message"] for change, _ in expected] == [m for _, m in expected]


def test_body_must_be_a_json_object(client, host, booking):
    host.login("admin")
    not_json = client.post(f"{API}/bookings/b1/incidents", data="category=late")
    assert not_json.status_code == 415 and error_of(not_json)["code"] == "unsupported_media_type"
    for raw in ("[1, 2]", '"late"', "{broken", ""):
        response = client.post(f"{API}/bookings/b1/incidents", data=raw, content_type="application/json")
        assert response.status_code == 422, raw
        assert error_of(response)["field"] == "body"
    form_post = client.post(f"{API}/incidents/1/resolve", data={"note": "x"})
    assert form_post.status_code == 415  # a body that is there must be JSON ...
    no_body = client.post(f"{API}/incidents/1/resolve")
    assert no_body.status_code == 404  # ... while the documented optional body may be left out


def test_odd_but_valid_text_is_stored_exactly(client, host, booking):
    host.login("admin")
    text = "Мастер опоздал 😞 — عميل غاضب \u202e RTL <b>bold</b> 'quotes\" & ampersand"
    response = record(client, description=text)
    assert response.status_code == 201
    assert client.get(f"{API}/bookings/b1").get_json()["incidents"][0]["description"] == text


def test_booking_far_in_the_past_and_future(client, host):
    host.login("admin")
    host.add_booking(
        "old", starts_at=datetime(1901, 1, 1, 10, tzinfo=UTC), ends_at=datetime(1901, 1, 1, 11, tzinfo=UTC)
    )
    host.add_booking(
        "new", starts_at=datetime(2999, 1, 1, 10, tzinfo=UTC), ends_at=datetime(2999, 1, 1, 11, tzinfo=UTC)
    )
    assert record(client, booking_id="old").status_code == 201
    assert record(client, booking_id="new").status_code == 201
    assert client.get(f"{API}/bookings/new").get_json()["incidents"][0]["visit_ended_at"].startswith("2999-01-01T11:00")


def test_wrong_method_is_json_405(client, host, booking):
    host.login("admin")
    response = client.get(f"{API}/incidents/1/resolve")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_failing_signal_receiver_does_not_break_the_request(client, host, booking, session):
    from flask_recovery import signals

    def broken(sender, **kwargs):
        raise RuntimeError("host receiver bug")

    signals.incident_recorded.connect(broken)
    try:
        host.login("admin")
        assert record(client).status_code == 201
    finally:
        signals.incident_recorded.disconnect(broken)
    assert session.query(Incident).count() == 1


def test_openapi_document_is_valid_and_matches_responses(client, host, booking):
    document = client.get(f"{API}/openapi.json").get_json()
    validate(document)
    assert set(document["paths"]) == {
        "/bookings/{booking_id}/incidents",
        "/bookings/{booking_id}",
        "/incidents/{incident_id}/resolve",
        "/incidents/{incident_id}/reopen",
        "/incidents/{incident_id}/compensations",
        "/compensations/{compensation_id}/approve",
        "/compensations/{compensation_id}/reject",
        "/compensations/pending",
        "/budget",
        "/clients/{client_id}",
        "/clients/{client_id}/flags",
        "/flags/{flag_id}/acknowledge",
        "/flags/{flag_id}/lift",
        "/clients/{client_id}/hold",
        "/clients/{client_id}/hold/lift",
    }
    assert document["servers"][0]["url"].endswith("/recovery/api")
    schemas = document["components"]["schemas"]

    def check(response, schema):
        resolver_doc = {"components": document["components"], **schema}
        jsonschema.validate(response.get_json(), resolver_doc)

    host.login("admin")
    created = record(client)
    check(created, schemas["Incident"])
    read = client.get(f"{API}/bookings/b1")
    check(
        read,
        document["paths"]["/bookings/{booking_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
    )
    check(record(client, severity="nope"), schemas["Error"])
    granted = client.post(f"{API}/incidents/{created.get_json()['id']}/compensations", json={"kind": "redo"})
    check(granted, schemas["Compensation"])
    check(client.post(f"{API}/incidents/{created.get_json()['id']}/resolve", json={}), schemas["Incident"])


def test_a_reopen_note_is_kept_hidden_from_roles_without_conduct_view_and_erased(app, client, host, booking):
    """The note sent to reopen was dropped; now it is kept, shown by a whitelist, and forgotten."""
    host.login("admin")
    case = record(client, description="Colour came out orange").get_json()["id"]
    conduct = client.post(
        f"{API}/bookings/b1/incidents", json={"severity": "major", "conduct": True, "description": "Shouted at Olga"}
    ).get_json()["id"]
    for incident in (case, conduct):
        assert (
            client.post(f"{API}/incidents/{incident}/resolve", json={"note": "Apologised, redo booked"}).status_code
            == 200
        )
        reopened = client.post(f"{API}/incidents/{incident}/reopen", json={"note": "She called: still uneven"})
        assert reopened.status_code == 200 and reopened.get_json()["reopen_note"] == "She called: still uneven"
    host.login("master")  # no conduct.view: every free text of the conduct case is hidden
    seen = {i["id"]: i for i in client.get(f"{API}/bookings/b1").get_json()["incidents"]}
    assert seen[case]["reopen_note"] == "She called: still uneven"
    hidden = seen[conduct]
    assert hidden["restricted"] is True
    assert [hidden[k] for k in ("description", "resolution_note", "reopen_note", "corrective_action")] == [None] * 4
    assert hidden["status"] == "reopened" and hidden["category"] == "client_conduct"
    with app.app_context():
        app.recovery.forget_client("c1")
        app.db.session.commit()
    host.login("admin")
    after = client.get(f"{API}/bookings/b1").get_json()["incidents"]
    assert {i["reopen_note"] for i in after} == {None} and {i["resolution_note"] for i in after} == {None}

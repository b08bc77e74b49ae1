"""Big and odd input on every API field, form and parameter: a clear 4xx or correct storage, never a 500.

Payloads: a 1 MB text, NUL bytes, right-to-left and emoji text, wrong JSON types, huge
and negative numbers, deeply nested JSON, broken UTF-8, odd ids in the URL, and bookings
dated in the year 1 and 9999 (in a time zone east of UTC, where 9999-12-31 spills over).
``PAYLOADS_TRIED`` counts what was sent; the closing note quotes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from flask_recovery import domain, tokens
from flask_recovery.models import Compensation, FollowUp, Incident

API = "/recovery/api"
MEGABYTE = "é" * 500_000 + "x" * 48_576  # 1 MiB once UTF-8 encoded
ODD_TEXTS = {
    "rtl": "העיצוב לא יצא כמו שרציתי \u202e‮ مرحبا بالعالم",
    "emoji": "Цвет 💇‍♀️🔥 не тот 👩🏽‍🦰 — 🙏",
    "combining": "Ze\u0301nobia Z\u0337a\u0338l\u0334g\u0335o\u0336",
    "zero_width": "a\u200bb\u200cc\u200dd\ufeff",
}
PAYLOADS_TRIED: list[str] = []


@pytest.fixture(autouse=True)
def _quiet_errors(app):
    """A 500 must show as a 500 response here, not as an exception in the test."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.testing = False


def tried(label: str) -> None:
    PAYLOADS_TRIED.append(label)


def assert_clear_4xx(response, field: str | None = None) -> dict:
    tried(response.request.path[:60])
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"], body
    if field is not None:
        assert body["error"].get("field") == field, body
    return body


@pytest.fixture
def world(client, host):
    """A booking with an open case, a resolved case, and a pending request; a manager logged in."""
    host.add_booking("b1")
    host.add_booking("b2")
    host.login("admin")
    open_case = client.post(
        f"{API}/bookings/b1/incidents", json={"category": "result", "severity": "major", "description": "orange"}
    ).get_json()
    resolved = client.post(
        f"{API}/bookings/b2/incidents", json={"category": "late", "severity": "minor", "description": "late"}
    ).get_json()
    assert client.post(f"{API}/incidents/{resolved['id']}/resolve", json={}).status_code == 200
    request = client.post(
        f"{API}/incidents/{open_case['id']}/compensations",
        json={"kind": "gift", "amount": 200_000, "note": "above the admin"},
    ).get_json()
    assert request["status"] == "pending_approval"
    host.login("manager")
    return {"open": open_case["id"], "resolved": resolved["id"], "request": request["id"]}


def text_targets(w):
    """(method path, JSON body builder, field) for every free-text field of the API."""
    return [
        (
            f"{API}/bookings/b1/incidents",
            lambda v: {"category": "late", "severity": "minor", "description": v},
            "description",
        ),
        (
            f"{API}/bookings/b1/incidents",
            lambda v: {"category": "late", "severity": "minor", "description": "late", "corrective_action": v},
            "corrective_action",
        ),
        (f"{API}/incidents/{w['open']}/resolve", lambda v: {"note": v}, "note"),
        (f"{API}/incidents/{w['resolved']}/reopen", lambda v: {"note": v}, "note"),
        (f"{API}/incidents/{w['open']}/compensations", lambda v: {"kind": "gift", "amount": 1000, "note": v}, "note"),
        (f"{API}/compensations/{w['request']}/approve", lambda v: {"note": v}, "note"),
        (f"{API}/compensations/{w['request']}/reject", lambda v: {"note": v}, "note"),
    ]


TARGET_IDS = ["description", "corrective_action", "resolve_note", "reopen_note", "grant_note", "approve", "reject"]


@pytest.mark.parametrize("index", range(len(TARGET_IDS)), ids=TARGET_IDS)
def test_a_megabyte_or_a_nul_in_any_api_text_is_a_clear_422(client, session, world, index):
    url, body, field = text_targets(world)[index]
    before = session.execute(sa.select(sa.func.count()).select_from(Incident)).scalar()
    for value in (MEGABYTE, "fine\x00hidden", "\x00"):
        response = client.post(url, json=body(value))
        assert response.status_code == 422
        assert_clear_4xx(response, field)
    session.expire_all()
    assert session.execute(sa.select(sa.func.count()).select_from(Incident)).scalar() == before
    assert session.get(Compensation, world["request"]).status == "pending_approval"


@pytest.mark.parametrize("kind", sorted(ODD_TEXTS))
def test_right_to_left_emoji_and_combining_text_is_stored_exactly(client, session, world, kind):
    text = ODD_TEXTS[kind]
    created = client.post(
        f"{API}/bookings/b1/incidents",
        json={"category": "late", "severity": "minor", "description": text, "corrective_action": text},
    )
    tried(kind)
    assert created.status_code == 201, created.get_json()
    incident = created.get_json()
    assert (incident["description"], incident["corrective_action"]) == (text.strip(), text.strip())
    resolved = client.post(f"{API}/incidents/{incident['id']}/resolve", json={"note": text})
    assert resolved.status_code == 200 and resolved.get_json()["resolution_note"] == text.strip()
    session.expire_all()
    assert session.get(Incident, incident["id"]).description == text.strip()
    page = client.get("/recovery/bookings/b1")
    assert page.status_code == 200


WRONG_VALUES = [
    ("category", ["late"]),
    ("category", "x" * 1_000_000),
    ("category", None),
    ("severity", 3),
    ("severity", "MINOR"),
    ("description", 42),
    ("description", {"text": "x"}),
    ("description", ["a", "b"]),
    ("description", True),
    ("corrective_action", 1.5),
    ("conduct", "yes"),
    ("conduct", 1),
    ("unknown_field", "x"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_VALUES, ids=[f"{f}={str(v)[:12]!r}" for f, v in WRONG_VALUES])
def test_wrong_json_types_in_an_incident_are_a_clear_422(client, world, field, value):
    body = {"category": "late", "severity": "minor", "description": "late"}
    body[field] = value
    assert_clear_4xx(client.post(f"{API}/bookings/b1/incidents", json=body), field)


MONEY = [
    ({"kind": "gift", "amount": 10**30}, "amount"),
    ({"kind": "gift", "amount": -1}, "amount"),
    ({"kind": "gift", "amount": 0}, "amount"),
    ({"kind": "gift", "amount": 1.5}, "amount"),
    ({"kind": "gift", "amount": "100"}, "amount"),
    ({"kind": "gift", "amount": True}, "amount"),
    ({"kind": "gift", "amount": 2**63}, "amount"),
    ({"kind": "percent_discount", "percent": 10**30}, "percent"),
    ({"kind": "percent_discount", "percent": -5}, "percent"),
    ({"kind": "percent_discount", "percent": 0.5}, "percent"),
    ({"kind": "percent_discount", "percent": "50%"}, "percent"),
    ({"kind": "teleport"}, "kind"),
    ({"kind": ["gift"]}, "kind"),
    ({"kind": "gift", "amount": 100, "idempotency_key": "k" * 1_000_000}, "idempotency_key"),
    ({"kind": "gift", "amount": 100, "idempotency_key": 7}, "idempotency_key"),
]


@pytest.mark.parametrize(("body", "field"), MONEY, ids=[f"{f}-{i}" for i, (_, f) in enumerate(MONEY)])
def test_odd_money_is_a_clear_422(client, session, world, body, field):
    assert_clear_4xx(client.post(f"{API}/incidents/{world['open']}/compensations", json=body), field)
    session.expire_all()
    assert session.query(Compensation).count() == 1


BODIES = [
    ("deep_array", "[" * 100_000, "application/json"),
    ("deep_object", '{"a":' * 100_000, "application/json"),
    ("broken_utf8", b'{"description": "\xff\xfe\xc3"}', "application/json"),
    ("not_json", "category=late", "application/json"),
    ("json_list", '["category", "late"]', "application/json"),
    ("json_string", '"late"', "application/json"),
    ("huge_garbage", "{" + "x" * 2_000_000, "application/json"),
    ("form_encoded", "category=late&severity=minor&description=x", "application/x-www-form-urlencoded"),
    ("nul_in_key", '{"descr\\u0000iption": "x"}', "application/json"),
]


@pytest.mark.parametrize(("label", "data", "content_type"), BODIES, ids=[b[0] for b in BODIES])
def test_malformed_request_bodies_are_a_clear_4xx(client, session, world, label, data, content_type):
    for url in (f"{API}/bookings/b1/incidents", f"{API}/incidents/{world['open']}/resolve"):
        response = client.post(url, data=data, content_type=content_type)
        assert_clear_4xx(response)
    session.expire_all()
    assert session.query(Incident).count() == 2


PATH_IDS = [
    "x" * 5000,
    "%00",
    "a%00b",
    "%F0%9F%92%87",
    "%E2%80%AE123",
    "..%2F..%2Fetc%2Fpasswd",
    "99999999999999999999999999",
    "-1",
    "0",
    "1.5",
    "1e3",
    "%20",
]


@pytest.mark.parametrize("raw", PATH_IDS)
def test_odd_ids_in_the_url_are_404_or_422(client, world, raw):
    incident = {"category": "late", "severity": "minor", "description": "x"}
    for url, body in (
        (f"{API}/bookings/{raw}", None),
        (f"{API}/bookings/{raw}/incidents", incident),
        (f"{API}/incidents/{raw}/resolve", {}),
        (f"{API}/incidents/{raw}/reopen", {"note": "x"}),
        (f"{API}/incidents/{raw}/compensations", {"kind": "gift", "amount": 100}),
        (f"{API}/compensations/{raw}/approve", {}),
        (f"{API}/compensations/{raw}/reject", {}),
    ):
        response = client.get(url) if body is None else client.post(url, json=body)
        tried(url[:40])
        if "%00" in raw:  # a control character is no id at all: 422 naming the field (never a 500)
            assert response.status_code == 422, (url[:80], response.status_code)
            assert response.get_json()["error"]["field"].endswith("_id")
            continue
        assert response.status_code == 404, (url[:80], response.status_code)
        assert response.get_json()["error"]["code"] == "not_found"
    page = client.get(f"/recovery/bookings/{raw}")
    assert page.status_code == 404 and page.mimetype == "text/html"


@pytest.mark.parametrize(
    "month", ["0001-01", "9999-12", "2026-13", "2026-00", "26-01", "2026-1", "x" * 100_000, "٢٠٢٦-٠١"]
)
def test_odd_months_are_a_clear_422(client, world, month):
    assert_clear_4xx(client.get(f"{API}/budget", query_string={"month": month}), "month")
    page = client.get("/recovery/budget", query_string={"month": month})
    assert page.status_code == 422 and page.mimetype == "text/html"


@pytest.mark.parametrize("month", ["1900-01", "2199-12"])
def test_the_edges_of_the_month_range_work(client, world, month):
    assert client.get(f"{API}/budget", query_string={"month": month}).status_code == 200
    assert client.get("/recovery/budget", query_string={"month": month}).status_code == 200


# -- forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [(MEGABYTE, 422), ("fine\x00hidden", 422), (ODD_TEXTS["rtl"], 303), (ODD_TEXTS["emoji"], 303)],
    ids=["megabyte", "nul", "rtl", "emoji"],
)
def test_the_incident_form_refuses_clearly_or_stores_exactly(client, session, world, value, status):
    response = client.post(
        "/recovery/bookings/b1/incidents", data={"category": "late", "severity": "minor", "description": value}
    )
    tried("form description")
    assert response.status_code == status, response.status_code
    session.expire_all()
    if status == 303:
        newest = session.scalars(sa.select(Incident).order_by(Incident.id.desc())).first()
        assert newest.description == value.strip()
    else:
        assert response.mimetype == "text/html" and 'aria-invalid="true"' in response.text
        assert "recovery-error" in response.text
        assert session.query(Incident).count() == 2


@pytest.mark.parametrize(
    "amount", ["1e309", "NaN", "Infinity", "-Infinity", "1" * 400, "12,34,56", "--1", "0x10", "1.2.3", "\x00"]
)
def test_the_compensation_form_refuses_odd_amounts(client, session, world, amount):
    response = client.post(
        f"/recovery/incidents/{world['open']}/compensations", data={"kind": "gift", "amount": amount, "note": "x"}
    )
    tried(f"form amount {amount[:10]}")
    assert response.status_code == 422, response.status_code
    assert response.mimetype == "text/html"
    session.expire_all()
    assert session.query(Compensation).count() == 1


@pytest.mark.parametrize("percent", ["1e3", "-5", "50.5", "9" * 50, "%", "½"])
def test_the_compensation_form_refuses_odd_percents(client, session, world, percent):
    response = client.post(
        f"/recovery/incidents/{world['open']}/compensations", data={"kind": "percent_discount", "percent": percent}
    )
    tried(f"form percent {percent[:10]}")
    assert response.status_code == 422, response.status_code


@pytest.mark.parametrize(
    ("comment", "status"),
    [(MEGABYTE, 422), ("bad\x00comment", 422), (ODD_TEXTS["rtl"], 200), (ODD_TEXTS["emoji"], 200)],
    ids=["megabyte", "nul", "rtl", "emoji"],
)
def test_the_clients_comment_is_refused_kindly_or_stored_exactly(client, session, host, comment, status):
    from .test_followup_mail import make_followup

    booking, incident, followup = make_followup(session, host, locale="en")
    token = tokens.make_token("answer", followup.id)
    response = client.post(f"/recovery/followups/{token}/answer", data={"choice": "not_right", "comment": comment})
    tried("answer comment")
    assert response.status_code == status
    assert response.mimetype == "text/html"
    session.expire_all()
    row = session.get(FollowUp, followup.id)
    if status == 200:
        assert row.comment == comment.strip()
    else:
        assert row.answer is None and 'role="alert"' in response.text
        expected = "control characters" if "\x00" in comment else "Please keep it under"
        assert expected in response.text


# -- dates far in the past and the future ----------------------------------------------------

FAR = {
    "year_1": (datetime(1, 1, 1, 0, 0, tzinfo=UTC), datetime(1, 1, 1, 1, 0, tzinfo=UTC)),
    "year_9999": (datetime(9999, 12, 31, 21, 0, tzinfo=UTC), datetime(9999, 12, 31, 22, 0, tzinfo=UTC)),
}


@pytest.mark.config(
    RECOVERY_TIMEZONE="Europe/Moscow",
    RECOVERY_BASE_URL="https://salon.example.com",
    MAIL_DEFAULT_SENDER="desk@salon.test",
    MAIL_SUPPRESS_SEND=True,
    RECOVERY_FOLLOWUP_DELAY=timedelta(0),
    RECOVERY_FOLLOWUP_WINDOW=(0, 24),
)
@pytest.mark.parametrize("when", sorted(FAR))
def test_bookings_dated_far_in_the_past_or_future_work_everywhere(app, client, session, host, runner, when):
    starts, ends = FAR[when]
    host.add_booking("far", starts_at=starts, ends_at=ends)
    host.login("admin")
    created = client.post(
        f"{API}/bookings/far/incidents", json={"category": "late", "severity": "major", "description": "late"}
    )
    tried(f"booking {when}")
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    incident = created.get_json()
    assert datetime.fromisoformat(incident["visit_ended_at"]) == ends
    assert client.get("/recovery/bookings/far").status_code == 200
    assert client.get(f"{API}/bookings/far").status_code == 200
    assert client.post(f"{API}/incidents/{incident['id']}/resolve", json={}).status_code == 200
    granted = client.post(f"{API}/incidents/{incident['id']}/compensations", json={"kind": "redo"})
    assert granted.status_code == 201
    result = runner.invoke(args=["recovery", "send-followups"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    session.expire_all()
    assert session.get(Incident, incident["id"]).visit_ended_at == ends
    with app.app_context():
        record = domain.booking_record(app.db.session, host.bookings["far"], host.STAFF["admin"])
        assert record["booking"]["ends_at"] == ends.isoformat()


def test_payload_count_is_recorded():
    """Runs last in this module: the number of odd inputs sent (quoted in the closing note)."""
    assert len(PAYLOADS_TRIED) > 0
    print(f"\nhostile-input payloads tried in this run: {len(PAYLOADS_TRIED)}")

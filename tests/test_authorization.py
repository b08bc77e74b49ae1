"""Who may do what: a role x action matrix through the JSON API and the staff pages.

The expected table is written out here from the contract and the defaults
(``DEFAULT_PERMISSIONS``: incident.record ``*``; incident.resolve/reopen and
compensation.request admin and manager; compensation.approve and budget.view manager;
``DEFAULT_AUTHORITY``: admin 150000 per grant, manager unlimited). Each cell is a test of
its own. A refusal must leave the state as it was; an allowed action must take effect.

Roles: nobody logged in (401), a master, an admin, a manager, a receptionist (a role no
default names) and an admin of another location (center bookings do not exist for her: 404).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from flask_recovery import Staff
from flask_recovery.config import DEFAULT_AUTHORITY, DEFAULT_PERMISSIONS
from flask_recovery.models import BudgetUsage, Compensation, Incident

API = "/recovery/api"
ROLES = ["nobody", "master", "admin", "manager", "receptionist", "north_admin"]
#: Files the pending request the approvers decide on (not any cell's own request).
OTHER_ADMIN = Staff(id="s-admin-2", name="Inna", role="admin")

SMALL_GIFT = 50_000  # within an admin's 150000 per grant
ABOVE_ADMIN = 200_000  # above it; within a manager's (unlimited) authority

G = (201, "granted")
P = (201, "pending_approval")

# fmt: off
#: action -> expected answer per role, in ROLES order: a status code, or (code, compensation status).
API_MATRIX: dict[str, tuple[Any, ...]] = {
    #                       nobody master admin manager receptionist north_admin
    "record_incident":     (401,   201,   201,  201,    201,         404),
    "read_booking":        (401,   200,   200,  200,    200,         404),
    "resolve":             (401,   403,   200,  200,    403,         404),
    "reopen":              (401,   403,   200,  200,    403,         404),
    "grant_small_gift":    (401,   403,   G,    G,      403,         404),
    "grant_above_limit":   (401,   403,   P,    G,      403,         404),
    "approve":             (401,   403,   403,  200,    403,         403),
    "reject":              (401,   403,   403,  200,    403,         403),
    "list_pending":        (401,   403,   403,  200,    403,         403),
    "budget":              (401,   403,   403,  200,    403,         403),
}
PAGE_MATRIX: dict[str, tuple[int, ...]] = {
    #                       nobody master admin manager receptionist north_admin
    "booking_page":        (401,   200,   200,  200,    200,         404),
    "record_form":         (401,   303,   303,  303,    303,         404),
    "resolve_form":        (401,   403,   303,  303,    403,         404),
}
# fmt: on


def test_the_matrix_follows_the_defaults():
    """The hand-written table agrees with the shipped defaults it was drawn from."""
    assert DEFAULT_PERMISSIONS["incident.record"] == "*"
    for action in ("incident.resolve", "incident.reopen", "compensation.request"):
        assert sorted(DEFAULT_PERMISSIONS[action]) == ["admin", "manager"], action
    assert list(DEFAULT_PERMISSIONS["compensation.approve"]) == ["manager"]
    assert list(DEFAULT_PERMISSIONS["budget.view"]) == ["manager"]
    assert SMALL_GIFT <= DEFAULT_AUTHORITY["admin"]["per_grant"] < ABOVE_ADMIN
    assert DEFAULT_AUTHORITY["manager"]["per_grant"] is None
    assert "receptionist" not in DEFAULT_AUTHORITY and "master" not in DEFAULT_AUTHORITY


def cells(matrix: dict[str, tuple]) -> list:
    return [
        pytest.param(action, role, expected[i], id=f"{action}-{role}")
        for action, expected in matrix.items()
        for i, role in enumerate(ROLES)
    ]


# -- the world each cell starts from ------------------------------------------------------


def prepare(client, host, action: str) -> dict[str, Any]:
    """Set up what ``action`` acts on, as an admin (or another admin for a request)."""
    host.add_booking("b1")
    ids: dict[str, Any] = {}
    host.login("admin")
    if action not in ("record_incident", "read_booking", "booking_page", "record_form", "list_pending", "budget"):
        response = client.post(
            f"{API}/bookings/b1/incidents",
            json={"category": "result", "severity": "major", "description": "Colour came out orange"},
        )
        assert response.status_code == 201, response.get_json()
        ids["incident"] = response.get_json()["id"]
    if action == "reopen":
        assert client.post(f"{API}/incidents/{ids['incident']}/resolve", json={}).status_code == 200
    if action in ("approve", "reject", "list_pending"):
        if "incident" not in ids:
            response = client.post(
                f"{API}/bookings/b1/incidents",
                json={"category": "result", "severity": "major", "description": "Colour came out orange"},
            )
            ids["incident"] = response.get_json()["id"]
        host.staff = OTHER_ADMIN
        response = client.post(
            f"{API}/incidents/{ids['incident']}/compensations",
            json={"kind": "gift", "amount": ABOVE_ADMIN, "note": "A ruined colour before a wedding"},
        )
        assert response.get_json()["status"] == "pending_approval", response.get_json()
        ids["request"] = response.get_json()["id"]
    host.login(None)
    return ids


def state(app) -> dict[str, Any]:
    with app.app_context():
        session = app.db.session
        return {
            "incidents": sorted(session.execute(sa.select(Incident.id, Incident.status)).all()),
            "compensations": sorted(
                session.execute(sa.select(Compensation.id, Compensation.status, Compensation.decided_by)).all()
            ),
            "ledger": sorted(session.execute(sa.select(BudgetUsage.staff_id, BudgetUsage.spent)).all()),
        }


def log_in(host, role: str) -> Staff | None:
    return host.login(None if role == "nobody" else role)


# -- the API --------------------------------------------------------------------------------


def call_api(client, action: str, ids: dict[str, Any]):
    incident, request = ids.get("incident"), ids.get("request")
    if action == "record_incident":
        return client.post(
            f"{API}/bookings/b1/incidents",
            json={"category": "late", "severity": "minor", "description": "Started 20 minutes late"},
        )
    if action == "read_booking":
        return client.get(f"{API}/bookings/b1")
    if action == "resolve":
        return client.post(f"{API}/incidents/{incident}/resolve", json={"note": "Redo booked for Friday"})
    if action == "reopen":
        return client.post(f"{API}/incidents/{incident}/reopen", json={})
    if action == "grant_small_gift":
        return client.post(f"{API}/incidents/{incident}/compensations", json={"kind": "gift", "amount": SMALL_GIFT})
    if action == "grant_above_limit":
        return client.post(
            f"{API}/incidents/{incident}/compensations",
            json={"kind": "gift", "amount": ABOVE_ADMIN, "note": "A ruined colour before a wedding"},
        )
    if action in ("approve", "reject"):
        return client.post(f"{API}/compensations/{request}/{action}", json={})
    if action == "list_pending":
        return client.get(f"{API}/compensations/pending")
    if action == "budget":
        return client.get(f"{API}/budget")
    raise AssertionError(action)


def check_effect(app, action: str, ids: dict[str, Any], staff: Staff, body: dict[str, Any], before, after) -> None:
    """An allowed action took effect, and only that."""
    if action == "record_incident":
        assert body["recorded_by"] == staff.id and body["status"] == "open"
        assert len(after["incidents"]) == len(before["incidents"]) + 1
    elif action == "read_booking":
        assert body["booking"]["id"] == "b1" and after == before
    elif action in ("resolve", "reopen"):
        assert body["id"] == ids["incident"] and body["status"] == {"resolve": "resolved", "reopen": "reopened"}[action]
    elif action.startswith("grant_"):
        assert body["requested_by"] == staff.id
        assert len(after["compensations"]) == len(before["compensations"]) + 1
        spent = dict(after["ledger"]).get(staff.id, 0)
        assert spent == (body["amount"] if body["status"] == "granted" else 0)
    elif action in ("approve", "reject"):
        assert body["id"] == ids["request"] and body["decided_by"] == staff.id
        assert body["status"] == {"approve": "granted", "reject": "rejected"}[action]
        assert dict(after["ledger"]).get(staff.id, 0) == (ABOVE_ADMIN if action == "approve" else 0)
    elif action == "list_pending":
        assert [r["id"] for r in body["requests"]] == [ids["request"]] and after == before
    elif action == "budget":
        assert {"month", "total", "staff"} <= set(body) and after == before


@pytest.mark.parametrize(("action", "role", "expected"), cells(API_MATRIX))
def test_api_cell(app, client, host, action, role, expected):
    ids = prepare(client, host, action)
    staff = log_in(host, role)
    before = state(app)

    response = call_api(client, action, ids)

    code, status = expected if isinstance(expected, tuple) else (expected, None)
    body = response.get_json()
    assert response.status_code == code, (response.status_code, body)
    after = state(app)
    if code >= 400:
        assert set(body) == {"error"} and body["error"]["message"], body
        assert body["error"]["code"] == {401: "not_authenticated", 403: "forbidden", 404: "not_found"}[code]
        assert after == before, "a refused request changed state"
    else:
        if status is not None:
            assert body["status"] == status, body
        check_effect(app, action, ids, staff, body, before, after)


# -- the staff pages --------------------------------------------------------------------------


def call_page(client, action: str, ids: dict[str, Any]):
    if action == "booking_page":
        return client.get("/recovery/bookings/b1")
    if action == "record_form":
        return client.post(
            "/recovery/bookings/b1/incidents",
            data={"category": "late", "severity": "minor", "description": "Started 20 minutes late"},
        )
    if action == "resolve_form":
        return client.post(f"/recovery/incidents/{ids['incident']}/resolve", data={"note": "Redo booked"})
    raise AssertionError(action)


@pytest.mark.parametrize(("action", "role", "expected"), cells(PAGE_MATRIX))
def test_page_cell(app, client, host, action, role, expected):
    ids = prepare(client, host, action)
    log_in(host, role)
    before = state(app)

    response = call_page(client, action, ids)

    assert response.status_code == expected, response.get_data(as_text=True)[:300]
    after = state(app)
    if expected >= 400:
        assert response.mimetype == "text/html"
        assert after == before, "a refused form changed state"
    elif action == "booking_page":
        assert response.mimetype == "text/html" and after == before
    elif action == "record_form":
        assert response.headers["Location"].split("#")[0].endswith("/recovery/bookings/b1")
        assert len(after["incidents"]) == len(before["incidents"]) + 1
    else:
        assert dict(after["incidents"])[ids["incident"]] == "resolved"

"""Authority under concurrency: simultaneous grants and decisions never pass a limit, never 500.

Each thread has its own test client, so each request runs in its own app context with its
own session and its own pooled connection (a SQLite file or PostgreSQL). The threads are
released together by a barrier, so the requests really overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import request

from flask_recovery import Staff
from flask_recovery.models import AuditEntry, BudgetUsage, Compensation
from tests.conftest import Host

API = "/recovery/api"
ADMIN = Host.STAFF["admin"]
MANAGER = Host.STAFF["manager"]
MANAGER_2 = Staff(id="s-manager-2", name="Maria", role="manager", email="maria@salon.test")

PER_GRANT = 10_000
PER_MONTH = 100_000
GRANT = 3_000
THREADS = 50

LIMITED = {
    "admin": {"per_grant": PER_GRANT, "per_month": PER_MONTH, "kinds": "all"},
    "manager": {"per_grant": None, "per_month": None, "kinds": "all"},
}
#: One connection per thread: 50 threads need 50 pooled connections (the default pool holds 15).
POOL = {"pool_size": THREADS, "max_overflow": 5, "pool_timeout": 60}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.config(RECOVERY_AUTHORITY=LIMITED, SQLALCHEMY_ENGINE_OPTIONS=POOL),
]


@pytest.fixture
def concurrent_app(app):
    """``app`` with a generous SQLite busy timeout (PostgreSQL waits on row locks anyway)."""
    with app.app_context():
        engine = app.db.engine
        if engine.dialect.name == "sqlite":

            @sa.event.listens_for(engine, "connect")
            def _busy_timeout(dbapi_connection, _record):
                dbapi_connection.execute("PRAGMA busy_timeout = 30000")

            engine.dispose()  # connections opened by create_all() predate the listener
    return app


def run_together(app, calls: list[Callable[[Any], Any]]) -> list[tuple[int, dict | None]]:
    """Run each ``call(client)`` in its own thread, all released at once by a barrier.

    Returns ``(status, json)`` per call, in order. An exception escaping the app (the test
    app propagates them) is reported as status 500 with the error's repr.
    """
    barrier = threading.Barrier(len(calls))
    results: list[tuple[int, dict | None]] = [(0, None)] * len(calls)

    def worker(index: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=60)
            response = calls[index](client)
            results[index] = (response.status_code, response.get_json(silent=True))
        except BaseException as error:  # reported as a failed cell, not lost
            results[index] = (500, {"exception": repr(error)})

    threads = [threading.Thread(target=worker, args=(i,), name=f"desk-{i}") for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a desk thread hung"
    return results


def new_incident(client, host, category: str = "result") -> int:
    host.login("admin")
    response = client.post(
        f"{API}/bookings/b1/incidents",
        json={"category": category, "severity": "major", "description": "Colour came out orange"},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def last_audit_id(app) -> int:
    with app.app_context():
        return app.db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEntry.id), 0)))


def audit_since(app, after: int) -> list[AuditEntry]:
    with app.app_context():
        return list(app.db.session.scalars(sa.select(AuditEntry).where(AuditEntry.id > after)))


def compensations(app) -> list[Compensation]:
    with app.app_context():
        return list(app.db.session.scalars(sa.select(Compensation).order_by(Compensation.id)))


def ledger(app) -> dict[str, tuple[int, int]]:
    """staff_id -> (spent, grants), summed over months."""
    with app.app_context():
        rows = app.db.session.execute(
            sa.select(BudgetUsage.staff_id, sa.func.sum(BudgetUsage.spent), sa.func.sum(BudgetUsage.grants)).group_by(
                BudgetUsage.staff_id
            )
        )
        return {staff_id: (int(spent), int(grants)) for staff_id, spent, grants in rows}


def log_in_by_header(app, host) -> None:
    """Let each request name its staff member (``X-Staff``), so threads can be different people."""
    people = {s.id: s for s in (*Host.STAFF.values(), MANAGER_2)}
    app.recovery.staff_loader(lambda: people.get(request.headers.get("X-Staff", ""), host.staff))


def pending_request(client, incident_id: int, amount: int, key: str) -> int:
    """Admin files a request above her per-grant limit; returns its id."""
    response = client.post(
        f"{API}/incidents/{incident_id}/compensations",
        json={"kind": "gift", "amount": amount, "note": "Above my limit", "idempotency_key": key},
        headers={"X-Staff": ADMIN.id},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "pending_approval"
    return response.get_json()["id"]


# -- grants ------------------------------------------------------------------------------


def test_fifty_simultaneous_grants_never_pass_the_monthly_budget(concurrent_app, client, host, booking):
    app = concurrent_app
    incident_id = new_incident(client, host)
    before = last_audit_id(app)
    body = {"kind": "gift", "amount": GRANT, "note": "Sorry for the colour"}

    def grant(c):
        return c.post(f"{API}/incidents/{incident_id}/compensations", json=body)

    results = run_together(app, [grant] * THREADS)

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: THREADS}, [r for r in results if r[0] != 201][:3]
    outcome = Counter(payload["status"] for _, payload in results)
    fit = PER_MONTH // GRANT  # 33
    assert outcome == {"granted": fit, "pending_approval": THREADS - fit}

    rows = compensations(app)
    assert len(rows) == THREADS
    granted = [c for c in rows if c.status == "granted"]
    assert sum(c.amount for c in granted) <= PER_MONTH
    assert sum(c.amount for c in granted) == fit * GRANT
    assert {(c.charged_to, c.charged_month) for c in granted} <= {(ADMIN.id, granted[0].charged_month)}
    assert all(c.charged_to is None for c in rows if c.status == "pending_approval")
    assert ledger(app) == {ADMIN.id: (fit * GRANT, fit)}

    entries = audit_since(app, before)
    by_action: dict[str, set[str]] = {}
    for entry in entries:
        by_action.setdefault(entry.action, set()).add(entry.subject_id)
    assert Counter(e.action for e in entries) == {"compensation.granted": fit, "compensation.requested": THREADS - fit}
    assert by_action["compensation.granted"] == {str(c.id) for c in granted}
    assert by_action["compensation.requested"] == {str(c.id) for c in rows if c.status == "pending_approval"}
    reasons = Counter((e.data or {}).get("reason") for e in entries if e.action == "compensation.requested")
    assert reasons == {"monthly_budget_exhausted": THREADS - fit}


def test_fifty_simultaneous_repeats_of_one_idempotency_key_spend_once(concurrent_app, client, host, booking):
    app = concurrent_app
    incident_id = new_incident(client, host)
    before = last_audit_id(app)
    body = {"kind": "gift", "amount": GRANT, "note": "Sorry", "idempotency_key": "double-click-7f3a"}

    def grant(c):
        return c.post(f"{API}/incidents/{incident_id}/compensations", json=body)

    results = run_together(app, [grant] * THREADS)

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 200: THREADS - 1}, [r for r in results if r[0] not in (200, 201)][:3]
    assert len({payload["id"] for _, payload in results}) == 1
    assert {payload["status"] for _, payload in results} == {"granted"}
    rows = compensations(app)
    assert len(rows) == 1 and rows[0].status == "granted" and rows[0].amount == GRANT
    assert ledger(app) == {ADMIN.id: (GRANT, 1)}
    assert Counter(e.action for e in audit_since(app, before)) == {"compensation.granted": 1}


# -- decisions ---------------------------------------------------------------------------


def test_two_managers_approving_the_same_requests_at_once_decide_each_once(concurrent_app, client, host, booking):
    """Ten pending requests, each approved by two managers at the same instant (20 threads)."""
    app = concurrent_app
    log_in_by_header(app, host)
    incident_id = new_incident(client, host)
    amounts = [PER_GRANT + 1_000 * (k + 1) for k in range(10)]
    ids = [pending_request(client, incident_id, amount, f"req-{k}") for k, amount in enumerate(amounts)]
    before = last_audit_id(app)

    def approve(compensation_id: int, manager: Staff):
        return lambda c: c.post(
            f"{API}/compensations/{compensation_id}/approve", json={"note": "ok"}, headers={"X-Staff": manager.id}
        )

    calls = [approve(cid, manager) for cid in ids for manager in (MANAGER, MANAGER_2)]
    results = run_together(app, calls)

    for k, cid in enumerate(ids):
        pair = results[2 * k : 2 * k + 2]
        assert sorted(status for status, _ in pair) == [200, 409], (cid, pair)
        winner = MANAGER if pair[0][0] == 200 else MANAGER_2
        loser_body = pair[1][1] if winner is MANAGER else pair[0][1]
        assert loser_body["error"]["code"] == "already_decided"
        row = next(c for c in compensations(app) if c.id == cid)
        assert row.status == "granted" and row.decided_by == winner.id and row.charged_to == winner.id

    rows = {c.id: c for c in compensations(app)}
    spent: Counter[str] = Counter()
    for cid in ids:
        spent[rows[cid].charged_to] += rows[cid].amount
    assert sum(spent.values()) == sum(amounts)
    assert {who: pair[0] for who, pair in ledger(app).items()} == {who: n for who, n in spent.items() if n}
    entries = audit_since(app, before)
    assert Counter(e.action for e in entries) == {"compensation.approved": len(ids)}
    assert sorted(int(e.subject_id) for e in entries) == sorted(ids)


def test_approve_and_reject_racing_on_one_request_decide_it_once(concurrent_app, client, host, booking):
    app = concurrent_app
    log_in_by_header(app, host)
    incident_id = new_incident(client, host)
    ids = [pending_request(client, incident_id, 20_000, f"race-{k}") for k in range(10)]

    def decide(compensation_id: int, manager: Staff, verb: str):
        return lambda c: c.post(
            f"{API}/compensations/{compensation_id}/{verb}", json={}, headers={"X-Staff": manager.id}
        )

    calls = [decide(cid, m, verb) for cid in ids for m, verb in ((MANAGER, "approve"), (MANAGER_2, "reject"))]
    results = run_together(app, calls)

    rows = {c.id: c for c in compensations(app)}
    approved = 0
    for k, cid in enumerate(ids):
        (approve_status, _), (reject_status, _) = results[2 * k : 2 * k + 2]
        assert sorted((approve_status, reject_status)) == [200, 409], (cid, results[2 * k : 2 * k + 2])
        if approve_status == 200:
            approved += 1
            assert rows[cid].status == "granted" and rows[cid].charged_to == MANAGER.id
        else:
            assert rows[cid].status == "rejected" and rows[cid].charged_to is None
            assert rows[cid].decided_by == MANAGER_2.id
    expected = {MANAGER.id: (20_000 * approved, approved)} if approved else {}
    assert {who: v for who, v in ledger(app).items() if v[1]} == expected


@pytest.mark.config(
    RECOVERY_AUTHORITY={
        "admin": {"per_grant": PER_GRANT, "per_month": PER_MONTH, "kinds": "all"},
        "manager": {"per_grant": None, "per_month": 100_000, "kinds": "all"},
    }
)
def test_one_manager_approving_many_requests_at_once_stays_within_her_budget(concurrent_app, client, host, booking):
    """Twenty requests of 15000 approved at the same instant against a 100000 month: six pass."""
    app = concurrent_app
    log_in_by_header(app, host)
    incident_id = new_incident(client, host)
    ids = [pending_request(client, incident_id, 15_000, f"many-{k}") for k in range(20)]
    before = last_audit_id(app)

    def approve(compensation_id: int):
        return lambda c: c.post(
            f"{API}/compensations/{compensation_id}/approve", json={}, headers={"X-Staff": MANAGER.id}
        )

    results = run_together(app, [approve(cid) for cid in ids])

    assert Counter(status for status, _ in results) == {200: 6, 409: 14}, results
    rows = [c for c in compensations(app) if c.id in ids]
    assert Counter(c.status for c in rows) == {"granted": 6, "pending_approval": 14}
    assert all(c.charged_to is None and c.decided_by is None for c in rows if c.status == "pending_approval")
    assert ledger(app) == {MANAGER.id: (90_000, 6)}
    actions = Counter(
        (e.action, (e.data or {}).get("reason")) for e in audit_since(app, before) if e.subject_type == "compensation"
    )
    assert actions == {
        ("compensation.approved", None): 6,
        ("compensation.decision_refused", "monthly_budget_exhausted"): 14,
    }


# -- money adds up per visit -------------------------------------------------------------

PRICE = 150_000  # the conftest booking's price


@pytest.mark.parametrize(
    ("who", "outcome"), [(MANAGER, "granted"), (ADMIN, "pending_approval")], ids=["granted", "requested"]
)
def test_two_desks_refunding_one_visit_in_full_at_once_one_wins(concurrent_app, client, host, booking, who, outcome):
    """Two desks, each on its own incident of the same booking, ask for the full price back
    at the same instant: exactly one refund exists (granted, or pending for a manager)."""
    app = concurrent_app
    log_in_by_header(app, host)
    incidents = [new_incident(client, host), new_incident(client, host, category="billing")]
    before = last_audit_id(app)

    def refund(incident_id: int):
        return lambda c: c.post(
            f"{API}/incidents/{incident_id}/compensations",
            json={"kind": "refund", "amount": PRICE},
            headers={"X-Staff": who.id},
        )

    results = run_together(app, [refund(incidents[0]), refund(incidents[1])])

    assert sorted(status for status, _ in results) == [201, 409], results
    winner = next(body for status, body in results if status == 201)
    loser = next(body for status, body in results if status == 409)
    assert winner["status"] == outcome and winner["amount"] == PRICE
    assert loser["error"]["code"] == "refund_exceeds_price"
    rows = compensations(app)
    assert [(c.kind, c.amount, c.status) for c in rows] == [("refund", PRICE, outcome)]
    assert ledger(app) == ({MANAGER.id: (PRICE, 1)} if outcome == "granted" else {})
    actions = Counter(
        (e.action, (e.data or {}).get("reason"))
        for e in audit_since(app, before)
        if e.action.startswith("compensation")
    )
    done = "compensation.granted" if outcome == "granted" else "compensation.requested"
    reason = None if outcome == "granted" else "above_authority"
    assert actions == {(done, reason): 1, ("compensation.refused", "refund_exceeds_price"): 1}


def test_twelve_partial_refunds_at_once_stop_at_the_price(concurrent_app, client, host, booking):
    """Twelve desks refund 40000 each on a 150000 visit at the same instant: three fit."""
    app = concurrent_app
    log_in_by_header(app, host)
    incidents = [new_incident(client, host), new_incident(client, host, category="billing")]

    def refund(k: int):
        return lambda c: c.post(
            f"{API}/incidents/{incidents[k % 2]}/compensations",
            json={"kind": "refund", "amount": 40_000},
            headers={"X-Staff": MANAGER.id},
        )

    results = run_together(app, [refund(k) for k in range(12)])

    assert Counter(status for status, _ in results) == {201: 3, 409: 9}, results
    assert {body["error"]["code"] for status, body in results if status == 409} == {"refund_exceeds_price"}
    assert sum(c.amount for c in compensations(app)) == 120_000 <= PRICE


def test_two_desks_giving_one_visit_a_redo_at_once_one_wins(concurrent_app, client, host, booking):
    app = concurrent_app
    log_in_by_header(app, host)
    incidents = [new_incident(client, host), new_incident(client, host, category="late")]

    def redo(incident_id: int):
        return lambda c: c.post(
            f"{API}/incidents/{incident_id}/compensations", json={"kind": "redo"}, headers={"X-Staff": MANAGER.id}
        )

    results = run_together(app, [redo(incidents[0]), redo(incidents[1])])

    assert sorted(status for status, _ in results) == [201, 409], results
    assert next(body for status, body in results if status == 409)["error"]["code"] == "redo_already_given"
    assert [c.kind for c in compensations(app)] == ["redo"]

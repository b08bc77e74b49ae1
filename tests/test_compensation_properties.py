"""Property tests: any sequence of grants and decisions keeps authority, budgets and the ledger sound.

Hypothesis draws sequences of operations through the JSON API: grants by staff of several
roles (admins with small limits, a role absent from ``RECOVERY_AUTHORITY``, managers with
limits, a director without), valid and invalid remedies, repeated idempotency keys, and
approvals or rejections by random staff of random (pending, decided or unknown) ids.

After every step the database is checked against invariants that hold whatever happened
(budgets, per-grant limits, kinds, nobody deciding their own request, no remedy on a
conduct case, the ledger equal to the sum of grants), and against a small model that
predicts each status code; every 4xx must leave compensations, the ledger and the outbox
untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flask_recovery import Staff, domain
from flask_recovery.config import DEFAULT_PERMISSIONS, REMEDY_KINDS
from flask_recovery.models import BudgetUsage, Compensation, Incident, Notification, metadata

API = "/recovery/api"

AUTHORITY: dict[str, dict[str, Any]] = {
    "admin": {"per_grant": 5_000, "per_month": 8_000, "kinds": ["gift", "discount", "percent_discount"]},
    "manager": {"per_grant": 20_000, "per_month": 25_000, "kinds": "all"},
    "director": {"per_grant": None, "per_month": None, "kinds": "all"},
}
PERMISSIONS = {
    **DEFAULT_PERMISSIONS,
    "compensation.request": ["admin", "manager", "senior", "director"],
    "compensation.approve": ["manager", "director"],
}

STAFF: dict[str, Staff | None] = {
    "a1": Staff(id="s-a1", name="Irina", role="admin"),
    "a2": Staff(id="s-a2", name="Inna", role="admin"),
    "senior": Staff(id="s-senior", name="Sofia", role="senior"),  # may ask, may grant nothing alone
    "m1": Staff(id="s-m1", name="Marina", role="manager"),
    "m2": Staff(id="s-m2", name="Maria", role="manager"),
    "director": Staff(id="s-dir", name="Diana", role="director"),
    "receptionist": Staff(id="s-recep", name="Rita", role="receptionist"),  # may not ask at all
    "north": Staff(id="s-north", name="Nina", role="admin", location="north"),  # sees no center case
    "nobody": None,
}
ROLE_OF = {s.id: s.role for s in STAFF.values() if s is not None}

UPSET = "The client was upset"
PRICED = 8_000  # price of b1 and b4 (redo is worth it; percent_discount a share of it)
#: booking -> (price, conduct, closed)
CASES = {
    "b1": (PRICED, False, False),
    "b2": (None, False, False),
    "b3": (PRICED, True, False),
    "b4": (PRICED, False, True),
}

pytestmark = pytest.mark.config(
    RECOVERY_AUTHORITY=AUTHORITY, RECOVERY_PERMISSIONS=PERMISSIONS, RECOVERY_MAX_AMOUNT=1_000_000
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies -------------------------------------------------------------------------
# Each step is either "clean" (a well-formed request by someone allowed to ask; only who,
# what and how much vary) or "noisy" (any staff, any case, malformed fields), so sequences
# reach the limits often and still meet every kind of refusal.

#: Values around the limits: admin 5000 per grant / 8000 a month, manager 20000 / 25000.
amounts = st.one_of(
    st.integers(1, 6_000), st.integers(1, 25_000), st.sampled_from([2_500, 4_000, 5_000, 5_001, 12_000, 20_000, 20_001])
)
valid_remedy = st.one_of(
    st.tuples(st.sampled_from(["gift", "gift", "discount", "refund"]), amounts, st.none()),
    st.tuples(st.just("percent_discount"), st.none(), st.integers(1, 100)),
    st.tuples(st.just("redo"), st.none(), st.none()),
)
odd_amounts = st.sampled_from([0, -1, 1, 5_000, 5_001, 12_000, 20_000, 20_001, 2_000_000, True, "100", 1.5, ""])
odd_percents = st.sampled_from([0, 1, 50, 100, 101, "5", True, 2.5])
any_remedy = st.tuples(
    st.sampled_from([*REMEDY_KINDS, "voucher", None, 3]),
    st.one_of(st.none(), odd_amounts, st.integers(-10, 30_000)),
    st.one_of(st.none(), odd_percents),
)
pending_target = st.tuples(st.just("pending"), st.integers(0, 30))

clean_grant = st.tuples(
    st.just("grant"),
    st.sampled_from(["a1", "a1", "a2", "senior", "m1", "m2", "director"]),
    st.sampled_from(["b1", "b1", "b1", "b2"]),
    valid_remedy,
    st.sampled_from([UPSET, UPSET, None]),
    st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2", "k3"])),
    st.just(False),
)
noisy_grant = st.tuples(
    st.just("grant"),
    st.sampled_from(list(STAFF)),
    st.sampled_from(["b1", "b2", "b3", "b4", "bogus"]),
    st.one_of(valid_remedy, any_remedy),
    st.sampled_from([UPSET, None, "", "   ", 7, "a\x00b"]),
    st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["", "x" * 65, 5])),
    st.booleans(),  # an unknown body field
)
clean_decide = st.tuples(
    st.just("decide"),
    st.sampled_from(["m1", "m2", "director"]),
    pending_target,
    st.sampled_from([True, True, False]),
    st.sampled_from([None, "ok"]),
)
noisy_decide = st.tuples(
    st.just("decide"),
    st.sampled_from(list(STAFF)),
    st.one_of(
        pending_target,
        st.tuples(st.just("any"), st.integers(0, 30)),
        st.tuples(st.just("bogus"), st.sampled_from([999_999, "abc", -1, 0, 2**40])),
    ),
    st.booleans(),
    st.sampled_from([None, "ok", 7, "a\x00b"]),
)
#: Every example starts from a grant and three requests, so decisions have something to decide.
PREAMBLE = [
    ("grant", "a1", "b1", ("gift", 3_000, None), UPSET, None, False),  # granted
    ("grant", "a1", "b1", ("gift", 9_000, None), UPSET, None, False),  # above her per-grant: a request
    ("grant", "senior", "b1", ("discount", 2_000, None), UPSET, None, False),  # no authority: a request
    ("grant", "m1", "b1", ("gift", 30_000, None), UPSET, None, False),  # above a manager's: the director's
]
operations = st.lists(
    st.one_of(clean_grant, clean_grant, clean_decide, noisy_grant, noisy_decide), min_size=4, max_size=16
)


# -- the model: what the API must answer -----------------------------------------------


def _covers(role: str, kind: str, value: int) -> bool:
    limits = AUTHORITY.get(role)
    if limits is None:
        return False
    kinds = REMEDY_KINDS if limits["kinds"] == "all" else limits["kinds"]
    return kind in kinds and (limits["per_grant"] is None or value <= limits["per_grant"])


def _fits(model: dict, staff_id: str, value: int) -> bool:
    per_month = AUTHORITY[ROLE_OF[staff_id]]["per_month"]
    return per_month is None or model["spent"].get(staff_id, 0) + value <= per_month


def _may(role: str, action: str) -> bool:
    roles = PERMISSIONS[action]
    return roles == "*" or role in roles


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value(kind: Any, amount: Any, percent: Any, price: int | None) -> int | None:
    """The remedy's value, or None when the API must refuse it (422); mirrors the rules."""
    if not isinstance(kind, str) or kind not in REMEDY_KINDS:
        return None
    amount = None if amount in (None, "") else amount
    percent = None if percent in (None, "") else percent
    if (amount is not None and not _whole(amount)) or (percent is not None and not _whole(percent)):
        return None
    if kind in ("gift", "discount", "refund"):
        if percent is not None or amount is None or amount <= 0 or amount > 1_000_000:
            return None
        if kind == "refund" and price is not None and amount > price:
            return None
        return amount
    if amount is not None or price is None:
        return None
    if kind == "redo":
        return None if percent is not None else price
    if percent is None or not 1 <= percent <= 100:
        return None
    return (price * percent + 50) // 100


def _note(note: Any) -> str | None | bool:
    """The cleaned note, or False when it is invalid (422)."""
    if note is None or (isinstance(note, str) and not note.strip()):
        return None
    if not isinstance(note, str) or "\x00" in note:
        return False
    return note.strip()


def _sent(value: Any) -> Any:
    return None if value in (None, "") else value


def _fingerprint(booking_id: str, remedy: tuple, note: Any) -> tuple:
    """What a repeated idempotency key must match: the incident, kind, amount and percent as
    sent, the cleaned note (``bool`` stands apart from ``int``: ``True`` is not ``1``)."""
    kind, amount, percent = remedy

    def typed(value: Any) -> Any:
        value = _sent(value)
        return (type(value).__name__, value) if value is not None else None

    return booking_id, kind if isinstance(kind, str) else repr(kind), typed(amount), typed(percent), _note(note)


def _visit_refused(
    model: dict, booking_id: str, kind: str, value: int, counted=("granted", "pending_approval")
) -> bool:
    """Money adds up per visit: refunds within the price, one redo."""
    price = CASES[booking_id][0]
    same = [c for c in model["comps"].values() if c["booking_id"] == booking_id and c["status"] in counted]
    if kind == "redo":
        return any(c["kind"] == "redo" for c in same)
    if kind == "refund" and price is not None:
        return sum(c["amount"] for c in same if c["kind"] == "refund") + value > price
    return False


def predict_grant(model: dict, who: str, booking_id: str, remedy: tuple, note: Any, key: Any, extra: bool):
    """``(status code, compensation status or None, value)`` the API must answer."""
    staff = STAFF[who]
    if staff is None:
        return 401, None, None
    if not _may(staff.role, "compensation.request"):
        return 403, None, None
    if extra:
        return 422, None, None
    if booking_id == "bogus" or staff.location not in (None, "center"):
        return 404, None, None
    if key is not None:
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            return 422, None, None
        earlier = model["keys"].get((staff.id, key))
        if earlier is not None:
            same = model["comps"][earlier]["fingerprint"] == _fingerprint(booking_id, remedy, note)
            return (200, model["comps"][earlier]["status"], None) if same else (409, None, None)
    price, conduct, closed = CASES[booking_id]
    if conduct or closed:
        return 409, None, None
    value = _value(*remedy, price)
    clean = _note(note)
    if value is None or clean is False:
        return 422, None, None
    if _visit_refused(model, booking_id, remedy[0], value):
        return 409, None, None
    alone = _covers(staff.role, remedy[0], value)
    granted = alone and _fits(model, staff.id, value)
    return 201, "granted" if granted else "pending_approval", value


def predict_decide(model: dict, who: str, compensation_id: Any, approve: bool, note: Any):
    staff = STAFF[who]
    if staff is None:
        return 401
    if not _may(staff.role, "compensation.approve"):
        return 403
    comp = model["comps"].get(compensation_id)
    if comp is None or staff.location not in (None, "center"):
        return 404
    if _note(note) is False:
        return 422
    if comp["requested_by"] == staff.id:
        return 403
    if not _covers(staff.role, comp["kind"], comp["amount"]):
        return 403
    if comp["status"] != "pending_approval":
        return 409
    others = {"comps": {cid: c for cid, c in model["comps"].items() if c is not comp}}
    if approve and _visit_refused(others, comp["booking_id"], comp["kind"], comp["amount"], counted=("granted",)):
        return 409
    if approve and not _fits(model, staff.id, comp["amount"]):
        return 409
    return 200


# -- database state and invariants -------------------------------------------------------


def reset(app, host) -> dict[str, int]:
    """Empty every extension table but the (append-only) audit log; open the four cases."""
    with app.app_context():
        with app.db.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "recovery_audit_log":
                    conn.execute(table.delete())
        session = app.db.session
        recorder = Staff(id="s-setup", name="Setup", role="manager")
        incidents = {}
        for booking_id, (_, conduct, closed) in CASES.items():
            incident = domain.record_incident(
                session,
                host.bookings[booking_id],
                recorder,
                category="client_conduct" if conduct else "result",
                severity="major",
                description="What went wrong",
            )
            incidents[booking_id] = incident.id
            if closed:
                domain.resolve_incident(session, incident.id, recorder)
                domain.close_incident(session, incident.id, recorder)
        return incidents


def snapshot(app) -> dict[str, Any]:
    with app.app_context():
        session = app.db.session
        comps = {
            c.id: {
                "status": c.status,
                "kind": c.kind,
                "amount": c.amount,
                "requested_by": c.requested_by,
                "decided_by": c.decided_by,
                "charged_to": c.charged_to,
                "charged_month": c.charged_month,
                "incident_conduct": conduct,
            }
            for c, conduct in session.execute(
                sa.select(Compensation, Incident.conduct).join(Incident, Incident.id == Compensation.incident_id)
            )
        }
        ledger = {(row.staff_id, row.month): (row.spent, row.grants) for row in session.scalars(sa.select(BudgetUsage))}
        outbox = session.scalar(sa.select(sa.func.count()).select_from(Notification))
        return {"comps": comps, "ledger": ledger, "outbox": outbox}


def check_invariants(state: dict[str, Any]) -> None:
    comps, ledger = state["comps"], state["ledger"]
    sums: dict[tuple[str, str], list[int]] = {}
    for cid, c in comps.items():
        assert c["status"] in ("granted", "pending_approval", "rejected"), (cid, c)
        assert not c["incident_conduct"], f"compensation {cid} on a conduct case"
        assert c["decided_by"] != c["requested_by"], f"{c['requested_by']} decided their own request {cid}"
        if c["status"] == "granted":
            final = c["charged_to"]
            assert final is not None and c["charged_month"], (cid, c)
            assert final == (c["decided_by"] or c["requested_by"]), (cid, c)
            role = ROLE_OF[final]
            assert _covers(role, c["kind"], c["amount"]), f"{cid}: {c['kind']} {c['amount']} beyond {role}"
            sums.setdefault((final, c["charged_month"]), []).append(c["amount"])
        else:
            assert c["charged_to"] is None and c["charged_month"] is None, (cid, c)
            assert (c["decided_by"] is None) == (c["status"] == "pending_approval"), (cid, c)
    for (staff_id, month), amounts in sums.items():
        per_month = AUTHORITY[ROLE_OF[staff_id]]["per_month"]
        assert per_month is None or sum(amounts) <= per_month, (staff_id, month, amounts)
        assert ledger.get((staff_id, month)) == (sum(amounts), len(amounts)), (staff_id, month, amounts, ledger)
    for (staff_id, month), (spent, grants) in ledger.items():
        if (staff_id, month) not in sums:
            assert (spent, grants) == (0, 0), (staff_id, month, spent, grants)


def pick_target(model: dict, target: tuple) -> Any:
    how, value = target
    pending = sorted(cid for cid, c in model["comps"].items() if c["status"] == "pending_approval")
    every = sorted(model["comps"])
    if how == "pending" and pending:
        return pending[value % len(pending)]
    if how in ("pending", "any") and every:
        return every[value % len(every)]
    return value if how == "bogus" else 999_999


# -- the property --------------------------------------------------------------------------


@SETTINGS
@given(steps=operations)
def test_any_sequence_of_grants_and_decisions_keeps_authority_and_budgets(app, client, host, steps):
    for booking_id, (price, _, _) in CASES.items():
        host.add_booking(booking_id, price=price)
    incidents = reset(app, host)
    model: dict[str, Any] = {"comps": {}, "keys": {}, "spent": {}}
    before = snapshot(app)

    for step in PREAMBLE + steps:
        if step[0] == "grant":
            _, who, booking_id, (kind, amount, percent), note, key, extra = step
            expected, outcome, value = predict_grant(model, who, booking_id, (kind, amount, percent), note, key, extra)
            body: dict[str, Any] = {"kind": kind, "amount": amount, "percent": percent, "note": note}
            if key is not None:
                body["idempotency_key"] = key
            if extra:
                body["coupon"] = "FREE"
            incident_id = incidents.get(booking_id, 999_999)
            host.staff = STAFF[who]
            response = client.post(f"{API}/incidents/{incident_id}/compensations", json=body)
        else:
            _, who, target, approve, note = step
            compensation_id = pick_target(model, target)
            expected = predict_decide(model, who, compensation_id, approve, note)
            host.staff = STAFF[who]
            verb = "approve" if approve else "reject"
            response = client.post(
                f"{API}/compensations/{compensation_id}/{verb}", json={} if note is None else {"note": note}
            )

        assert response.status_code < 500, (step, response.get_data(as_text=True)[:500])
        assert response.status_code == expected, (step, response.get_json())
        after = snapshot(app)
        check_invariants(after)
        body_out = response.get_json()
        event(f"{step[0]} -> {response.status_code} {body_out.get('status', '')}")

        if response.status_code >= 400:
            assert set(body_out) == {"error"}, body_out
            assert after == before, f"a refused request ({response.status_code}) changed state: {step}"
        elif step[0] == "grant" and response.status_code == 200:  # an idempotent repeat
            assert after == before
            assert body_out["id"] == model["keys"][(STAFF[who].id, key)]
        elif step[0] == "grant":
            staff = STAFF[who]
            assert body_out["status"] == outcome and body_out["amount"] == value, (step, body_out)
            assert set(after["comps"]) - set(before["comps"]) == {body_out["id"]}
            model["comps"][body_out["id"]] = {
                "status": outcome,
                "kind": kind,
                "amount": value,
                "requested_by": staff.id,
                "booking_id": booking_id,
                "fingerprint": _fingerprint(booking_id, (kind, amount, percent), note),
            }
            if key is not None:
                model["keys"][(staff.id, key)] = body_out["id"]
            if outcome == "granted":
                model["spent"][staff.id] = model["spent"].get(staff.id, 0) + value
            assert after["outbox"] == before["outbox"] + (outcome == "pending_approval")
        else:
            staff = STAFF[who]
            comp = model["comps"][compensation_id]
            comp["status"] = "granted" if approve else "rejected"
            assert body_out["status"] == comp["status"] and body_out["decided_by"] == staff.id
            changed = {cid for cid in after["comps"] if after["comps"][cid] != before["comps"].get(cid)}
            assert changed == {compensation_id}
            if approve:
                model["spent"][staff.id] = model["spent"].get(staff.id, 0) + comp["amount"]
                assert after["comps"][compensation_id]["charged_to"] == staff.id

        assert {cid: c["status"] for cid, c in after["comps"].items()} == {
            cid: c["status"] for cid, c in model["comps"].items()
        }
        spent: dict[str, int] = {}
        for (staff_id, _month), (amount, _) in after["ledger"].items():
            spent[staff_id] = spent.get(staff_id, 0) + amount
        assert {k: v for k, v in spent.items() if v} == {k: v for k, v in model["spent"].items() if v}
        before = after


def test_the_property_sees_every_outcome(app, client, host):
    """A fixed sequence: grant, over-budget request, request by a role with no authority,
    approval, refused self-approval, rejection, conduct refusal, idempotent repeat."""
    for booking_id, (price, _, _) in CASES.items():
        host.add_booking(booking_id, price=price)
    incidents = reset(app, host)

    def grant(who, booking_id="b1", **body):
        host.staff = STAFF[who]
        return client.post(f"{API}/incidents/{incidents[booking_id]}/compensations", json=body)

    def decide(who, compensation_id, verb):
        host.staff = STAFF[who]
        return client.post(f"{API}/compensations/{compensation_id}/{verb}", json={})

    first = grant("a1", kind="gift", amount=5_000, idempotency_key="k1")
    assert (first.status_code, first.get_json()["status"]) == (201, "granted")
    assert grant("a1", kind="gift", amount=5_000, idempotency_key="k1").status_code == 200
    assert grant("a1", kind="gift", amount=3_000).get_json()["status"] == "granted"  # 8000 of 8000
    over = grant("a1", kind="gift", amount=1)  # 8001 > 8000 this month: a request, no note needed
    assert (over.status_code, over.get_json()["status"]) == (201, "pending_approval")
    assert grant("a1", kind="gift", amount=3_000, idempotency_key="k1").status_code == 409  # the key, another body
    request = grant("a1", kind="gift", amount=1, note="Budget used up")
    assert (request.status_code, request.get_json()["status"]) == (201, "pending_approval")
    senior = grant("senior", kind="gift", amount=1, note="I may grant nothing alone")
    assert senior.get_json()["status"] == "pending_approval"
    assert grant("a1", "b3", kind="gift", amount=100, note="x").status_code == 409
    assert decide("m1", senior.get_json()["id"], "approve").status_code == 200
    assert decide("m1", senior.get_json()["id"], "reject").status_code == 409
    refund = grant("m1", kind="refund", amount=8_000, note="Within my limits")
    assert refund.get_json()["status"] == "granted"
    assert grant("m1", kind="refund", amount=1).status_code == 409  # the visit's price is refunded
    assert grant("director", kind="redo").status_code == 201
    assert grant("director", kind="redo").status_code == 409  # one redo per visit
    big = grant("m1", kind="gift", amount=30_000, note="Above my per-grant limit")
    assert big.get_json()["status"] == "pending_approval"
    assert decide("m1", big.get_json()["id"], "approve").status_code == 403  # her own
    assert decide("m2", big.get_json()["id"], "approve").status_code == 403  # beyond m2's per-grant
    assert decide("director", big.get_json()["id"], "approve").status_code == 200
    assert decide("m2", request.get_json()["id"], "reject").status_code == 200
    check_invariants(snapshot(app))

"""The authorization matrix: every route of the app and every CLI command, for every kind of caller.

Callers: nobody logged in, each role of ``tests/conftest.py`` (receptionist: a role no
default names; master; admin; manager), and staff of another location (an admin and a
manager of ``north``; the world below lives at ``center``). Each cell expects exactly
what CONTRACT.md and ``DEFAULT_PERMISSIONS`` allow: 401 without staff, 403 beyond the
role, 404 for another location's booking, case, request, flag or client, and lists that
show another location nothing of ``center``. A refused call changes nothing; a GET
changes nothing; an allowed POST takes effect.

The table is keyed by every ``(endpoint, method)`` of ``app.url_map``:
:func:`test_every_route_is_in_the_table` fails when a route appears that is not in it,
so nobody can add an unprotected route silently. The CLI has its own table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from flask_recovery import Staff, domain, tokens
from flask_recovery.config import DEFAULT_PERMISSIONS, permitted
from flask_recovery.domain import flags
from flask_recovery.models import (
    AuditEntry,
    BookingHold,
    Compensation,
    Flag,
    FollowUp,
    Incident,
    Unsubscribe,
    utcnow,
)

from .conftest import Host

P = "/recovery"
API = "/recovery/api"
ROLES = ("nobody", "receptionist", "master", "admin", "manager", "north_admin", "north_manager")
NORTH_MANAGER = Staff(id="s-north-mgr", name="Nadia", role="manager", location="north")
OTHER_ADMIN = Staff(id="s-admin-2", name="Inna", role="admin")
#: Every text written at ``center`` carries this; staff of ``north`` must never read it.
CENTER = "CENTER-ONLY-7f3a"
NORTH = "NORTH-VISIBLE-51c2"


def log_in(host: Host, role: str) -> Staff | None:
    if role == "nobody":
        return host.login(None)
    if role == "north_manager":
        host.staff = NORTH_MANAGER
        return NORTH_MANAGER
    return host.login(role)


# -- the world the cells act on -------------------------------------------------------------


class World:
    """Bookings at ``center`` (client ``c1``) and ``north`` (client ``c-north``); each call of a
    ``fresh_*`` method makes a new object, so every cell acts on its own."""

    def __init__(self, app, host: Host) -> None:
        self.app, self.host = app, host
        self.counter = itertools.count(1)
        self.admin, self.manager = Host.STAFF["admin"], Host.STAFF["manager"]
        with app.app_context():
            self.booking = self._booking("center")
            self.north_booking = host.add_booking("n1", client_id="c-north", location="north")
            s = app.db.session
            incident = domain.record_incident(
                s, self.north_booking, Host.STAFF["north_admin"], category="late", severity="major", description=NORTH
            )
            domain.grant_compensation(
                s, incident.id, app.recovery.load_booking, Host.STAFF["north_admin"], kind="gift", amount=5_000
            )
            self.north_request = domain.grant_compensation(
                s,
                incident.id,
                app.recovery.load_booking,
                Host.STAFF["north_admin"],
                kind="gift",
                amount=200_000,
                note=NORTH,
            )[0].id
            # center: a granted gift (Irina's spend) and a case, so lists have something to hide
            center_case = self._incident(self.booking)
            domain.grant_compensation(s, center_case, app.recovery.load_booking, self.admin, kind="gift", amount=7_000)
            s.commit()  # the host's commit: what the cells below read from other app contexts
            self.request()
            s.commit()  # the host's commit (the rules only flush)
            s.remove()

    def _id(self) -> int:
        return next(self.counter)

    def _booking(self, location: str = "center", client_id: str = "c1"):
        return self.host.add_booking(f"b{self._id()}", client_id=client_id, location=location)

    def _incident(self, booking, status: str = "open") -> int:
        s = self.app.db.session
        incident = domain.record_incident(
            s, booking, self.admin, category="result", severity="major", description=f"{CENTER} burned"
        )
        if status in ("resolved", "closed"):
            domain.resolve_incident(s, incident.id, self.admin, note=CENTER)
        return incident.id

    def fresh_booking(self) -> str:
        return self._booking().id

    def fresh_incident(self, status: str = "open") -> int:
        with self.app.app_context():
            return self._incident(self._booking(), status)

    def request(self) -> int:
        """A pending request at center, filed by an admin nobody in the matrix is."""
        with self.app.app_context():
            s = self.app.db.session
            incident = self._incident(self._booking())
            compensation, _ = domain.grant_compensation(
                s, incident, self.app.recovery.load_booking, OTHER_ADMIN, kind="gift", amount=200_000, note=CENTER
            )
            assert compensation.status == "pending_approval"
            return compensation.id

    def fresh_client(self, hold: bool = False) -> str:
        """A center client with a case (so center staff know her), optionally on hold."""
        client_id = f"c-{self._id()}"
        with self.app.app_context():
            booking = self._booking(client_id=client_id)
            self._incident(booking)
            if hold:
                flags.set_hold(self.app.db.session, client_id, self.manager, reason=CENTER)
        return client_id

    def fresh_flag(self) -> int:
        """An active, unseen flag for a center client, set by hand on her booking."""
        with self.app.app_context():
            booking = self._booking(client_id=f"c-{self._id()}")
            flag = flags.set_flag(
                self.app.db.session, booking.client_id, self.manager, type="vip", reason=CENTER, booking=booking
            )
            return flag.id

    def fresh_followup(self) -> int:
        """A sent check-in for a center visit of a client of its own (its links are public, and
        an unsubscribe link is used up once she is unsubscribed)."""
        with self.app.app_context():
            booking = self._booking(client_id=f"c-mail-{self._id()}")
            s = self.app.db.session
            row = FollowUp(
                booking_id=booking.id,
                client_id=booking.client_id,
                location=booking.location,
                kind="checkin",
                status="sent",
                due_at=utcnow(),
                locale="en",
                email=booking.client_email,
                client_name=booking.client_name,
                sent_at=utcnow(),
            )
            s.add(row)
            s.commit()
            return row.id

    def token(self, purpose: str) -> str:
        followup_id = self.fresh_followup()
        with self.app.test_request_context():
            return tokens.make_token(purpose, followup_id)


def snapshot(app) -> dict[str, Any]:
    """What a refused call or a GET must leave exactly as it was."""
    with app.app_context():
        s = app.db.session
        state = {
            "incidents": s.execute(sa.select(Incident.id, Incident.status).order_by(Incident.id)).all(),
            "compensations": s.execute(sa.select(Compensation.id, Compensation.status).order_by(Compensation.id)).all(),
            "flags": s.execute(sa.select(Flag.id, Flag.status, Flag.acknowledged_at).order_by(Flag.id)).all(),
            "holds": s.execute(sa.select(BookingHold.id, BookingHold.active).order_by(BookingHold.id)).all(),
            "answers": s.execute(sa.select(FollowUp.id, FollowUp.answer).order_by(FollowUp.id)).all(),
            "unsubscribes": s.scalar(sa.select(sa.func.count()).select_from(Unsubscribe)),
            "audit": s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)),
        }
        s.commit()  # the host's commit (the rules only flush)
        s.remove()
        return state


# -- the table ----------------------------------------------------------------------------------


@dataclass
class Cell:
    """How to call one route, and what each caller gets (in ``ROLES`` order)."""

    call: Any  # (world) -> (method, url, kwargs)
    expected: tuple[int, ...]
    permission: str | None = None  # the DEFAULT_PERMISSIONS action it rests on ("" for public)
    lists: bool = False  # a list: other-location staff get 200 with none of center's data
    notes: dict[str, Any] = field(default_factory=dict)


def api_post(url, body=None):
    return lambda w: ("POST", url(w), {"json": body if body is not None else {}})


def get(url):
    return lambda w: ("GET", url(w), {})


def form(url, data=None):
    return lambda w: ("POST", url(w), {"data": data or {}})


INCIDENT = {"category": "late", "severity": "minor", "description": f"{CENTER} late"}

# fmt: off
#: (endpoint, method) -> Cell.      nobody rcpt  master admin manager n_admin n_manager
TABLE: dict[tuple[str, str], Cell] = {
    # the JSON API
    ("recovery_api.openapi", "GET"): Cell(get(lambda w: f"{API}/openapi.json"),
                                          (200, 200, 200, 200, 200, 200, 200), ""),
    ("recovery_api.booking", "GET"): Cell(get(lambda w: f"{API}/bookings/{w.booking.id}"),
                                          (401, 200, 200, 200, 200, 404, 404), "*"),
    ("recovery_api.record_incident", "POST"): Cell(
        api_post(lambda w: f"{API}/bookings/{w.fresh_booking()}/incidents", INCIDENT),
                                          (401, 201, 201, 201, 201, 404, 404), "incident.record"),
    ("recovery_api.resolve_incident", "POST"): Cell(api_post(lambda w: f"{API}/incidents/{w.fresh_incident()}/resolve"),
                                          (401, 403, 403, 200, 200, 404, 404), "incident.resolve"),
    ("recovery_api.reopen_incident", "POST"): Cell(
        api_post(lambda w: f"{API}/incidents/{w.fresh_incident('resolved')}/reopen"),
                                          (401, 403, 403, 200, 200, 404, 404), "incident.reopen"),
    ("recovery_api.grant", "POST"): Cell(api_post(lambda w: f"{API}/incidents/{w.fresh_incident()}/compensations",
                                                  {"kind": "gift", "amount": 5_000}),
                                          (401, 403, 403, 201, 201, 404, 404), "compensation.request"),
    ("recovery_api.approve", "POST"): Cell(api_post(lambda w: f"{API}/compensations/{w.request()}/approve"),
                                          (401, 403, 403, 403, 200, 403, 404), "compensation.approve"),
    ("recovery_api.reject", "POST"): Cell(api_post(lambda w: f"{API}/compensations/{w.request()}/reject"),
                                          (401, 403, 403, 403, 200, 403, 404), "compensation.approve"),
    ("recovery_api.pending", "GET"): Cell(get(lambda w: f"{API}/compensations/pending"),
                                          (401, 403, 403, 403, 200, 403, 200), "compensation.approve", lists=True),
    ("recovery_api.budget", "GET"): Cell(get(lambda w: f"{API}/budget"),
                                          (401, 403, 403, 403, 200, 403, 200), "budget.view", lists=True),
    ("recovery_api.client", "GET"): Cell(get(lambda w: f"{API}/clients/c1"),
                                          (401, 200, 200, 200, 200, 404, 404), "client.view"),
    ("recovery_api.client_flags", "GET"): Cell(get(lambda w: f"{API}/clients/c1/flags"),
                                          (401, 200, 200, 200, 200, 404, 404), "client.view"),
    ("recovery_api.hold", "GET"): Cell(get(lambda w: f"{API}/clients/c1/hold"),
                                          (401, 200, 200, 200, 200, 404, 404), "client.view"),
    ("recovery_api.set_flag", "POST"): Cell(api_post(lambda w: f"{API}/clients/{w.fresh_client()}/flags",
                                                     {"type": "vip", "reason": CENTER}),
                                          (401, 403, 403, 403, 201, 403, 404), "flag.manage"),
    ("recovery_api.acknowledge_flag", "POST"): Cell(api_post(lambda w: f"{API}/flags/{w.fresh_flag()}/acknowledge",
                                                             {"note": CENTER}),
                                          (401, 200, 200, 200, 200, 404, 404), "flag.acknowledge"),
    ("recovery_api.lift_flag", "POST"): Cell(
        api_post(lambda w: f"{API}/flags/{w.fresh_flag()}/lift", {"reason": CENTER}),
                                          (401, 403, 403, 403, 200, 403, 404), "flag.manage"),
    ("recovery_api.set_hold", "POST"): Cell(
        api_post(lambda w: f"{API}/clients/{w.fresh_client()}/hold", {"reason": CENTER}),
                                          (401, 403, 403, 403, 201, 403, 404), "hold.manage"),
    ("recovery_api.lift_hold", "POST"): Cell(api_post(lambda w: f"{API}/clients/{w.fresh_client(hold=True)}/hold/lift",
                                                      {"reason": CENTER}),
                                          (401, 403, 403, 403, 200, 403, 404), "hold.manage"),
    ("recovery_api.not_found", "GET"): Cell(get(lambda w: f"{API}/no/such/thing"), (404,) * 7, ""),
    ("recovery_api.not_found", "POST"): Cell(api_post(lambda w: f"{API}/no/such/thing"), (404,) * 7, ""),
    ("recovery_api.not_found", "PUT"): Cell(lambda w: ("PUT", f"{API}/bookings/b1", {}), (405,) * 7, ""),
    ("recovery_api.not_found", "PATCH"): Cell(lambda w: ("PATCH", f"{API}/no/such", {}), (404,) * 7, ""),
    ("recovery_api.not_found", "DELETE"): Cell(lambda w: ("DELETE", f"{API}/incidents/1", {}), (404,) * 7, ""),
    # the staff pages
    ("recovery.booking", "GET"): Cell(get(lambda w: f"{P}/bookings/{w.booking.id}"),
                                      (401, 200, 200, 200, 200, 404, 404), "*"),
    ("recovery.record_incident", "POST"): Cell(form(lambda w: f"{P}/bookings/{w.fresh_booking()}/incidents", INCIDENT),
                                      (401, 303, 303, 303, 303, 404, 404), "incident.record"),
    ("recovery.resolve_incident", "POST"): Cell(form(lambda w: f"{P}/incidents/{w.fresh_incident()}/resolve"),
                                      (401, 403, 403, 303, 303, 404, 404), "incident.resolve"),
    ("recovery.reopen_incident", "POST"): Cell(form(lambda w: f"{P}/incidents/{w.fresh_incident('resolved')}/reopen"),
                                      (401, 403, 403, 303, 303, 404, 404), "incident.reopen"),
    ("recovery.grant_compensation", "POST"): Cell(form(lambda w: f"{P}/incidents/{w.fresh_incident()}/compensations",
                                                       {"kind": "gift", "amount": "50"}),
                                      (401, 403, 403, 303, 303, 404, 404), "compensation.request"),
    ("recovery.approve_compensation", "POST"): Cell(form(lambda w: f"{P}/compensations/{w.request()}/approve"),
                                      (401, 403, 403, 403, 303, 403, 404), "compensation.approve"),
    ("recovery.reject_compensation", "POST"): Cell(form(lambda w: f"{P}/compensations/{w.request()}/reject"),
                                      (401, 403, 403, 403, 303, 403, 404), "compensation.approve"),
    ("recovery.approvals", "GET"): Cell(get(lambda w: f"{P}/approvals"),
                                      (401, 403, 403, 403, 200, 403, 200), "compensation.approve", lists=True),
    ("recovery.budget", "GET"): Cell(get(lambda w: f"{P}/budget"),
                                      (401, 403, 403, 403, 200, 403, 200), "budget.view", lists=True),
    ("recovery.client", "GET"): Cell(get(lambda w: f"{P}/clients/c1"),
                                      (401, 200, 200, 200, 200, 404, 404), "client.view"),
    ("recovery.set_flag", "POST"): Cell(form(lambda w: f"{P}/clients/{w.fresh_client()}/flags",
                                             {"type": "vip", "reason": CENTER}),
                                      (401, 403, 403, 403, 303, 403, 404), "flag.manage"),
    ("recovery.acknowledge_flag", "POST"): Cell(
        form(lambda w: f"{P}/flags/{w.fresh_flag()}/acknowledge", {"note": CENTER}),
                                      (401, 303, 303, 303, 303, 404, 404), "flag.acknowledge"),
    ("recovery.lift_flag", "POST"): Cell(form(lambda w: f"{P}/flags/{w.fresh_flag()}/lift", {"reason": CENTER}),
                                      (401, 403, 403, 403, 303, 403, 404), "flag.manage"),
    ("recovery.set_hold", "POST"): Cell(form(lambda w: f"{P}/clients/{w.fresh_client()}/hold", {"reason": CENTER}),
                                      (401, 403, 403, 403, 303, 403, 404), "hold.manage"),
    ("recovery.lift_hold", "POST"): Cell(form(lambda w: f"{P}/clients/{w.fresh_client(hold=True)}/hold/lift",
                                              {"reason": CENTER}),
                                      (401, 403, 403, 403, 303, 403, 404), "hold.manage"),
    ("recovery.journal", "GET"): Cell(get(lambda w: f"{P}/journal"),
                                      (401, 403, 403, 403, 200, 403, 200), "journal.view", lists=True),
    ("recovery.journal_csv", "GET"): Cell(get(lambda w: f"{P}/journal.csv"),
                                      (401, 403, 403, 403, 200, 403, 200), "journal.view", lists=True),
    ("recovery.static", "GET"): Cell(get(lambda w: f"{P}/static/recovery.css"), (200,) * 7, ""),
    ("static", "GET"): Cell(get(lambda w: "/static/none.css"), (404,) * 7, ""),
    # the client's pages: the signed link is the authorization; a staff login adds nothing
    ("recovery_answers.answer_page", "GET"): Cell(get(lambda w: f"{P}/followups/{w.token('answer')}/answer/good"),
                                      (200,) * 7, ""),
    ("recovery_answers.answer", "POST"): Cell(form(lambda w: f"{P}/followups/{w.token('answer')}/answer",
                                                   {"choice": "good"}), (200,) * 7, ""),
    ("recovery_answers.unsubscribe_page", "GET"): Cell(
        get(lambda w: f"{P}/followups/{w.token('unsubscribe')}/unsubscribe"),
                                      (200,) * 7, ""),
    ("recovery_answers.unsubscribe_confirm", "POST"): Cell(
        form(lambda w: f"{P}/followups/{w.token('unsubscribe')}/unsubscribe", {"List-Unsubscribe": "One-Click"}),
        (200,) * 7, ""),
}
# fmt: on

CHECKED: list[tuple[str, str, str]] = []


def app_routes(app) -> set[tuple[str, str]]:
    return {
        (rule.endpoint, method) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_route_is_in_the_table(app):
    """A new route without a row here fails the suite: nobody adds an unprotected route silently."""
    routes = app_routes(app)
    missing = sorted(routes - set(TABLE))
    assert not missing, f"routes with no authorization row in tests/test_authz_matrix.py: {missing}"
    gone = sorted(set(TABLE) - routes)
    assert not gone, f"rows for routes that no longer exist: {gone}"


def test_the_table_follows_the_permissions():
    """Each row's 403s are exactly the roles DEFAULT_PERMISSIONS leaves out of its action."""
    config = {"RECOVERY_PERMISSIONS": DEFAULT_PERMISSIONS}
    for (endpoint, method), cell in TABLE.items():
        if not cell.permission:
            assert 401 not in cell.expected, endpoint  # a public route needs no login
            continue
        action = cell.permission
        for role, status in zip(ROLES, cell.expected, strict=True):
            if role == "nobody":
                assert status == 401, (endpoint, role)
                continue
            staff_role = {"north_admin": "admin", "north_manager": "manager"}.get(role, role)
            allowed = action == "*" or permitted(config, action, staff_role)
            if role.startswith("north"):
                assert status in ((200, 404) if allowed else (403,)), (endpoint, role, status)
                assert allowed or status == 403
            else:
                assert (status < 400) == allowed, (endpoint, method, role, status, action)


@pytest.mark.parametrize("route", sorted(TABLE), ids=[f"{m} {e}" for e, m in sorted(TABLE)])
def test_route(app, client, host, route):
    world = World(app, host)
    cell = TABLE[route]
    for role, expected in zip(ROLES, cell.expected, strict=True):
        method, url, kwargs = cell.call(world)
        staff = log_in(host, role)
        before = snapshot(app)
        response = client.open(url, method=method, **kwargs)
        after = snapshot(app)
        CHECKED.append((route[0], route[1], role))
        context = (route, role, response.status_code, response.get_data(as_text=True)[:300])
        assert response.status_code == expected, context
        is_api = url.startswith(API)
        if expected in (401, 403, 404) and route[0] not in ("static",):
            if is_api:
                body = response.get_json()
                assert set(body) == {"error"} and body["error"]["message"], context
                if route[0] != "recovery_api.not_found":
                    code = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}[expected]
                    assert body["error"]["code"] == code, context
            else:
                assert response.mimetype == "text/html", context
        if expected >= 400 or method == "GET":
            assert after == before, ("state changed", context)
        elif method == "POST" and route[0].startswith(("recovery.", "recovery_api.")):
            assert after["audit"] > before["audit"], ("an allowed action left no audit line", context)
            if staff is not None:
                with app.app_context():
                    newest = app.db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
                    assert newest.actor_id == staff.id, context
                    app.db.session.commit()  # the host's commit (the rules only flush)
                    app.db.session.remove()
        body = response.get_data(as_text=True)
        response.close()
        if role.startswith("north"):
            assert CENTER not in body, ("another location's data leaked", context)
        if cell.lists and expected == 200 and role == "north_manager" and route[0] != "recovery.journal_csv":
            if "pending" in url or "approvals" in url:
                assert str(world.north_request) in body or NORTH in body, ("north's own request is missing", context)
            if "budget" in url:
                assert "Nina" in body and "Irina" not in body, context


def test_nobody_approves_their_own_request(app, client, host):
    """A manager whose own limit is small files a request; only another manager may decide it."""
    app.config["RECOVERY_AUTHORITY"] = {
        "admin": {"per_grant": 150_000, "per_month": None, "kinds": "all"},
        "manager": {"per_grant": 10_000, "per_month": None, "kinds": "all"},
    }
    world = World(app, host)
    incident = world.fresh_incident()
    host.login("manager")
    filed = client.post(
        f"{API}/incidents/{incident}/compensations", json={"kind": "gift", "amount": 9_000_00, "note": "wedding"}
    )
    assert filed.status_code == 201 and filed.get_json()["status"] == "pending_approval"
    own = filed.get_json()["id"]
    for url, kwargs in ((f"{API}/compensations/{own}/approve", {"json": {}}), (f"{P}/compensations/{own}/approve", {})):
        refused = client.post(url, **kwargs)
        assert refused.status_code == 403, refused.get_data(as_text=True)[:200]
    assert client.post(f"{API}/compensations/{own}/reject", json={}).status_code == 403
    host.staff = Staff(id="s-manager-2", name="Maria", role="manager")
    app.config["RECOVERY_AUTHORITY"]["manager"]["per_grant"] = None
    approved = client.post(f"{API}/compensations/{own}/approve", json={})
    assert approved.status_code == 200 and approved.get_json()["decided_by"] == "s-manager-2"
    with app.app_context():
        refusals = app.db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "compensation.decision_refused")
        ).all()
        assert [(r.actor_id, r.data["reason"]) for r in refusals] == [("s-manager", "own_request")] * 3
        app.db.session.commit()  # the host's commit (the rules only flush)
        app.db.session.remove()


# -- conduct notes only for the configured roles ---------------------------------------------


def conduct_world(app, host) -> tuple[str, str]:
    booking = host.add_booking("bc", client_id="c-rude")
    with app.app_context():
        domain.record_incident(
            app.db.session,
            booking,
            Host.STAFF["master"],
            severity="major",
            conduct=True,
            description="CONDUCT-NOTE-91 shouted at Olga",
            corrective_action="CONDUCT-NOTE-91 manager on duty",
        )
        app.db.session.commit()  # the host's commit (the rules only flush)
        app.db.session.remove()
    return booking.id, "c-rude"


def conduct_views(client, booking_id: str, client_id: str) -> dict[str, str]:
    return {
        "api booking": client.get(f"{API}/bookings/{booking_id}").get_data(as_text=True),
        "booking page": client.get(f"{P}/bookings/{booking_id}").get_data(as_text=True),
        "api client": client.get(f"{API}/clients/{client_id}").get_data(as_text=True),
        "api flags": client.get(f"{API}/clients/{client_id}/flags").get_data(as_text=True),
        "client page": client.get(f"{P}/clients/{client_id}").get_data(as_text=True),
    }


@pytest.mark.parametrize(
    ("readers", "who_reads"),
    [
        (None, {"admin", "manager"}),  # the default: conduct.view = admin, manager
        (["master"], {"master"}),
        ([], set()),
    ],
    ids=["default", "masters-only", "nobody"],
)
def test_conduct_notes_only_for_the_configured_roles(app, client, host, readers, who_reads):
    if readers is not None:
        app.config["RECOVERY_PERMISSIONS"] = dict(DEFAULT_PERMISSIONS, **{"conduct.view": readers})
    booking_id, client_id = conduct_world(app, host)
    for role in ("receptionist", "master", "admin", "manager"):
        log_in(host, role)
        for where, text in conduct_views(client, booking_id, client_id).items():
            CHECKED.append(("conduct", where, role))
            if role not in who_reads or where != "api flags":  # the flag's reason need not quote the note
                assert ("CONDUCT-NOTE-91" in text) == (role in who_reads), (role, where)


# -- the CLI --------------------------------------------------------------------------------------

#: command -> a harmless invocation. The shell is the authorization: whoever can run
#: ``flask`` on the server is an operator, so the CLI must not consult the staff login.
CLI_TABLE: dict[str, list[str]] = {
    "init-db": ["--help"],
    "send-notifications": ["--dry-run"],
    "send-followups": ["--dry-run"],
    "forget-client": ["c-nobody", "--yes"],
    "export-client": ["c-nobody"],
    "preview-followup": ["--help"],
    "stats": [],
}


def test_every_cli_command_is_in_the_table(app):
    commands = set(app.cli.commands["recovery"].commands)
    assert commands == set(CLI_TABLE), f"CLI commands without a row: {sorted(commands - set(CLI_TABLE))}"


@pytest.mark.config(RECOVERY_BASE_URL="https://salon.example.com", MAIL_DEFAULT_SENDER="desk@salon.test")
@pytest.mark.parametrize("command", sorted(CLI_TABLE))
def test_cli_command_ignores_the_staff_login(app, host, runner, command):
    """Every command gives the same answer whoever is "logged in" (it never asks the loader)."""
    World(app, host)
    asked = []
    loader = app.recovery._staff_loader
    app.recovery.staff_loader(lambda: asked.append(1) or loader())
    outputs = set()
    for role in ROLES:
        log_in(host, role)
        result = runner.invoke(args=["recovery", command, *CLI_TABLE[command]])
        CHECKED.append(("cli", command, role))
        assert result.exit_code == 0, (command, role, result.output)
        outputs.add(_stable(result.output))
    assert len(outputs) == 1, outputs
    assert asked == [], "a CLI command consulted the staff login"


def _stable(output: str) -> str:
    """The output without timestamps (an export carries its time)."""
    import re

    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.+]+", "<time>", output)
